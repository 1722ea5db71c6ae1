"""``radiobject ingest`` refuses what the Python constructors refuse: collections whose subject IDs
never pair, TIFFs of several image series (unless ``--tiff-series`` picks one); and third-party
log lines (nibabel's header fix-ups) never reach the user's stderr."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile

from radiobject import RadiObject
from radiobject.cli.main import main
from radiobject.ingest.sample import SampleCohort, make_sample_cohort

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cohort(tmp_path: Path) -> SampleCohort:
    return make_sample_cohort(tmp_path / "c", 3, (10, 12, 8))


def _files(cohort: SampleCohort, kind: str) -> list[str]:
    return sorted(str(p) for p in cohort.folder.glob(f"*/anat/*_{kind}.nii.gz"))


def test_file_lists_that_never_pair_exit_2_naming_collections_and_ids(
    cohort: SampleCohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--images T1w=FILE ... seg=FILE ...`` take IDs from the file names (``sub-01_T1w`` and
    ``sub-01_seg``): refused as in Python, where the CLI stored two collections of disjoint subjects."""
    images = [f"T1w={f}" for f in _files(cohort, "T1w")] + [f"seg={f}" for f in _files(cohort, "seg")]
    out = tmp_path / "s"
    assert main(["ingest", str(out), "--images", *images, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "AlignmentError" not in err and "never pair" in err
    assert "'T1w': 'sub-01_T1w'" in err and "'seg': 'sub-01_seg'" in err and "--subject-pattern" in err
    assert not out.exists()
    pattern = ["--subject-pattern", "(sub-[^_/]+)"]
    assert main(["ingest", str(out), "--images", *images, *pattern, "--no-progress"]) == 0
    assert RadiObject(str(out)).seg.obs_subject_ids == list(cohort.subjects)
    apart = tmp_path / "apart"  # collections of different subjects, on purpose
    assert main(["ingest", str(apart), "--images", *images, "--no-validate-alignment", "--no-progress"]) == 0
    assert RadiObject(str(apart)).seg.obs_subject_ids == [f"{s}_seg" for s in cohort.subjects]


def test_globs_whose_ids_never_pair_exit_2(
    cohort: SampleCohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for kind in ("T1w", "seg"):
        (tmp_path / kind).mkdir()
        for f in _files(cohort, kind):
            shutil.copy(f, tmp_path / kind)
    globs = [f"T1w={tmp_path}/T1w/*.nii.gz", f"seg={tmp_path}/seg/*.nii.gz"]
    assert main(["ingest", str(tmp_path / "s"), "--images", *globs, "--no-progress"]) == 2
    assert "never pair" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_a_manifest_whose_ids_never_pair_exits_2(
    cohort: SampleCohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = pd.read_csv(cohort.manifest, dtype=str)
    m["subject_id"] = [Path(p).name.split(".")[0] for p in m["path"]]  # IDs that are file names
    m.to_csv(tmp_path / "m.csv", index=False)
    assert main(["ingest", str(tmp_path / "s"), "--manifest", str(tmp_path / "m.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "never pair" in err and "'FLAIR': 'sub-01_FLAIR'" in err and not (tmp_path / "s").exists()
    assert main(["ingest", str(tmp_path / "s"), "--manifest", str(cohort.manifest), "--no-progress"]) == 0


def test_a_tiff_of_several_series_fails_unless_one_is_chosen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiffs" / "sub-01.tif"
    path.parent.mkdir()
    small = np.arange(7 * 16 * 12, dtype=np.uint16).reshape(7, 16, 12)
    with tifffile.TiffWriter(path) as w:
        w.write(np.zeros((5, 32, 24), np.uint16), metadata={"axes": "ZYX"})
        w.write(small, metadata={"axes": "ZYX"})
    args = ["ingest", str(tmp_path / "s"), "--images", f"img={tmp_path}/tiffs/*.tif", "--no-progress"]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 1  # was 0: series 0 stored, silently
    out = capsys.readouterr().out
    assert "holds 2 image series" in out and "(5, 32, 24)" in out and "(7, 16, 12)" in out
    items = json.loads((tmp_path / "r.json").read_text())["items"]
    assert [i["status"] for i in items] == ["failed"] and "sub-01.tif" in items[0]["source"]
    assert not (tmp_path / "s").exists()  # nothing valid: no store
    assert main([*args, "--tiff-series", "1"]) == 0
    vol = RadiObject(str(tmp_path / "s")).img.loc["sub-01"]
    assert vol.shape == (12, 16, 7) and vol.metadata["series"] == 1
    np.testing.assert_array_equal(vol.to_numpy(), small.T)
    assert main(["ingest", str(tmp_path / "t"), *args[2:], "--tiff-series", "-1"]) == 2
    assert "--tiff-series must be >= 0" in capsys.readouterr().err and not (tmp_path / "t").exists()


def _fixed_on_read(path: Path) -> None:
    """A NIfTI whose header nibabel fixes when it reads it (negative pixdim: a WARNING-level log line)."""
    img = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.eye(4))
    img.header["pixdim"][1] = -2.0
    nib.save(img, path)


def test_nibabel_fix_up_lines_stay_off_stderr_and_are_kept(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for s in ("sub-01", "sub-02"):
        _fixed_on_read(tmp_path / "in" / f"{s}.nii.gz")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import nibabel as nib, sys; nib.load(sys.argv[1])"
    plain = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "in" / "sub-01.nii.gz")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert "pixdim[1,2,3] should be positive" in plain.stderr  # what nibabel prints by itself
    r = subprocess.run(
        [sys.executable, "-m", "radiobject.cli.main", "ingest", str(tmp_path / "s")]
        + ["--images", f"T1w={tmp_path}/in/*.nii.gz", "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "pixdim" not in r.stderr and "should be" not in r.stderr, r.stderr
    fixes = RadiObject(str(tmp_path / "s")).T1w.loc["sub-02"].metadata["header_fixes"]
    assert "pixdim[1,2,3] should be positive; setting to abs of pixdim values" in fixes
