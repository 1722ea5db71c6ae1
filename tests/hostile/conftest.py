"""Helpers of the hostile tests: run the CLI in-process and check it ends in one line, no traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject.cli.main import main
from radiobject.ingest.sample import SampleCohort, make_sample_cohort

SHAPE = (8, 9, 7)


@dataclass
class Result:
    """Exit code and captured streams of one in-process CLI run."""

    rc: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> Result:
    """``radiobject ARGS`` in-process; asserts it returned an exit code and printed no traceback."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert isinstance(rc, int)
    assert "Traceback" not in err and "Traceback" not in out, err
    return Result(rc, out, err)


def error_line(res: Result) -> str:
    """The ``error: ...`` line of a failed run (exactly one)."""
    lines = [ln for ln in res.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.err
    return lines[0]


def write_nifti(path: Path, shape: tuple[int, ...] = SHAPE) -> Path:
    """A small int16 NIfTI with a known ramp of values."""
    data = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.2, 1.0])), str(path))
    return path


def manifest(folder: Path, rows: list[tuple[str, str, str]], name: str = "m.csv") -> Path:
    """A manifest CSV with (subject_id, collection, path) rows."""
    path = folder / name
    lines = ["subject_id,collection,path"] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def cohort(tmp_path: Path) -> SampleCohort:
    """2 subjects x (T1w, FLAIR, seg)."""
    return make_sample_cohort(tmp_path / "cohort", 2, SHAPE)


@pytest.fixture
def store(cohort: SampleCohort, tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]) -> Path:
    """A finished store of the sample cohort (both backends)."""
    out = tmp_path / "store"
    res = run_cli(capsys, "ingest", "--manifest", cohort.manifest, "--backend", backend, "--no-progress", out)
    assert res.rc == 0, res.err
    return out
