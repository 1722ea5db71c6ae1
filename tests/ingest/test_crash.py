"""kill -9, SIGTERM and SIGINT (Ctrl-C) of a running ingest at several points, then re-runs: the
final store equals an uninterrupted one volume by volume, after every stop readers see only complete
volumes and ``ingest.json`` never claims completeness; a signalled run exits promptly (143 / 130)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radiobject import RadiObject
from radiobject.ingest.sample import make_sample_cohort
from radiobject.ingest.target import MARKER
from radiobject.model.integrity import verify_store
from tests.ingest._compare import assert_same_store

ROOT = Path(__file__).resolve().parents[2]


def _ingest_cmd(cohort: Path, uri: str, backend: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "radiobject.cli.main",
        "ingest",
        uri,
        "--manifest",
        str(cohort / "manifest.csv"),
        "--subjects",
        str(cohort / "participants.csv"),
        "--backend",
        backend,
        "--workers",
        "1",
        "--commit-every",
        "3",
        "--compression",
        "zstd",
        "--level",
        "9",
        "--no-progress",
    ]


def _n_arrays(uri: str) -> int:
    base = Path(uri, "collections")
    if not base.is_dir():
        return 0
    return sum(
        len([n for n in os.listdir(d / "volumes") if not n.startswith("__") and n != "zarr.json"])
        for d in base.iterdir()
        if (d / "volumes").is_dir()
    )


def _kill_after(
    cmd: list[str], n_arrays: int, uri: str, timeout: float = 60.0, sig: int = signal.SIGKILL, exact: bool = False
) -> bool:
    """Starts the ingest, sends ``sig`` once ``n_arrays`` arrays exist; False when it finished first.

    A SIGTERM / SIGINT must end the run promptly (90 s bound on a loaded machine) with exit code
    143 / 130 and leave
    ``ingest.json`` saying ``complete: false``. ``exact``: the exit code must be 143 / 130 (the
    signal arrived mid-run, after the handler was installed), not death by the signal itself."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT, text=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if _n_arrays(uri) >= n_arrays:
                os.kill(proc.pid, sig)
                _, err = proc.communicate(timeout=90)  # generous: the test machine is shared and loaded
                if sig != signal.SIGKILL and (exact or proc.returncode != -sig):  # -sig: before Python's handler
                    assert proc.returncode == {signal.SIGTERM: 143, signal.SIGINT: 130}[sig], err
                    assert "re-run" in err and "Traceback" not in err, err
                marker = Path(uri, MARKER)
                if marker.exists():
                    assert json.loads(marker.read_text())["complete"] is False
                return True
            time.sleep(0.001)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _visible_volumes_are_complete(uri: str, reference: str) -> int:
    """Every volume a reader can see equals the reference; returns how many there are."""
    if not Path(uri, "radiobject.json").exists() and not Path(uri, "collections").exists():
        return 0
    try:
        radi = RadiObject(uri)
    except FileNotFoundError:
        return 0
    ref = RadiObject(reference)
    n = 0
    for name in radi.collection_names:
        for oid in radi[name].obs_ids:
            assert np.array_equal(radi[name].volume(oid).to_numpy(), ref[name].volume(oid).to_numpy()), f"{name}/{oid}"
            n += 1
    return n


def _layout_cmd(cohort: Path, uri: str, backend: str) -> list[str]:
    """The same cohort through ``ingest --layout bids`` (the layout path's own signal handling)."""
    plain = _ingest_cmd(cohort, uri, backend)
    return [*plain[:5], "--layout", "bids", str(cohort), *plain[9:]]


def _crash_and_resume(
    tmp_path: Path,
    backend: str,
    kill_points: list[int],
    sig: int = signal.SIGKILL,
    command: Any = _ingest_cmd,
    exact: bool = False,
) -> None:
    cohort = make_sample_cohort(tmp_path / "cohort", 12, (40, 44, 36)).folder
    reference = str(tmp_path / "reference")
    ref = subprocess.run(
        command(cohort, reference, backend),
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert ref.returncode == 0, f"the reference ingest ended with {ref.returncode}:\n{ref.stdout}\n{ref.stderr}"
    uri = str(tmp_path / "crashed")
    cmd = command(cohort, uri, backend)
    killed = 0
    for k in kill_points:
        if _kill_after(cmd, k, uri, sig=sig, exact=exact):
            killed += 1
        _visible_volumes_are_complete(uri, reference)
    assert killed >= 2, "the ingest finished before the kill points; make it slower"
    done = subprocess.run(
        cmd,
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "present" in done.stdout
    assert_same_store(reference, uri)
    report = verify_store(uri)
    assert report.ok, [str(f) for f in report.errors]
    assert json.loads(Path(uri, MARKER).read_text())["complete"] is True


def test_kill9_then_resume_zarr(tmp_path: Path) -> None:
    # the last point (every array exists) lands in the final commits / subject table / compaction
    _crash_and_resume(tmp_path, "zarr", [1, 14, 27, 36])


@pytest.mark.slow
def test_kill9_then_resume_tiledb(tmp_path: Path) -> None:
    _crash_and_resume(tmp_path, "tiledb", [1, 10, 20, 33])


def test_sigterm_then_resume_zarr(tmp_path: Path) -> None:
    _crash_and_resume(tmp_path, "zarr", [1, 14, 27], sig=signal.SIGTERM)


def test_sigterm_of_a_layout_ingest_then_resume(tmp_path: Path) -> None:
    _crash_and_resume(tmp_path, "zarr", [1, 14, 27], sig=signal.SIGTERM, command=_layout_cmd, exact=True)


@pytest.mark.slow
def test_sigint_then_resume_zarr(tmp_path: Path) -> None:
    _crash_and_resume(tmp_path, "zarr", [2, 16, 30], sig=signal.SIGINT)


@pytest.mark.slow
def test_sigterm_then_resume_tiledb(tmp_path: Path) -> None:
    _crash_and_resume(tmp_path, "tiledb", [1, 12, 24], sig=signal.SIGTERM)
