"""A source that blocks mid-read fails its subject, not the cohort (issue 10, "Hangs").

A 3-subject cohort where one file's read blocks: with a 2 s item limit that subject fails with
``SourceTimeoutError`` naming the file and the limit, the other two are stored, nothing of the
stuck one is written (no volume folder, no catalog row), the run returns, and a re-run after the
block is released ingests the missing subject. The block is real where the system allows it (a
write lease held by another process: ``open`` blocks in the kernel, like a hung network mount), and
a reader hook otherwise (inside the read, in thread-pool and process-pool workers).
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import radiobject.ingest.sources as sources
from radiobject import RadiObject, WriteOptions
from radiobject.ingest.cohort import CohortReport, run_ingest
from radiobject.ingest.manifest import CohortPlan, plan_from_globs
from radiobject.model.bulk import executor_submitter
from radiobject.model.integrity import verify_store
from tests.hostile._stuck import LeaseHolder, blocking, event_wait, install_block
from tests.hostile.conftest import run_cli, write_nifti

pytestmark = pytest.mark.timeout(180)

LIMIT = WriteOptions(workers=2, item_timeout_s=2)
PATTERN = r"(sub-\d+)_"


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "data"
    folder.mkdir()
    return [write_nifti(folder / f"sub-0{i}_T1w.nii.gz", (8 + i, 9, 7)) for i in (1, 2, 3)]


def _plan(files: list[Path]) -> CohortPlan:
    return plan_from_globs({"T1w": str(files[0].parent / "*.nii.gz")}, subject_pattern=PATTERN)


def _check_stuck_run(uri: str, report: CohortReport, stuck: Path) -> None:
    """Two subjects stored, the stuck one failed by name, nothing of it written."""
    assert report.count("written") == 2 and report.count("failed") == 1, report.summary_table()
    (row,) = report.failed
    assert row["obs_subject_id"] == "sub-02"
    assert row["error"].startswith("SourceTimeoutError") and str(stuck) in row["error"], row["error"]
    assert "2 s" in row["error"]
    assert sorted(RadiObject(uri)["T1w"].obs_ids) == ["sub-01", "sub-03"]
    assert not (Path(uri) / "collections" / "T1w" / "volumes" / "sub-02").exists()
    found = verify_store(uri)
    # volumes and catalog verify; the one finding is the marker of a run with a failed item
    assert [f.where for f in found.errors] == ["ingest.json"], found.findings


def _check_resumed(uri: str, report: CohortReport, files: list[Path]) -> None:
    assert report.ok, report.summary_table()
    assert report.count("written") == 1 and report.count("present") == 2
    radi = RadiObject(uri)
    for f in files:
        sid = f.name.split("_")[0]
        np.testing.assert_array_equal(radi["T1w"].volume(sid).to_numpy(), np.asarray(nib.load(f).dataobj))
    assert verify_store(uri).ok


def test_blocking_open_fails_its_subject(tmp_path: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A real blocking ``open`` (file lease): the check before writing times out for that file."""
    monkeypatch.setenv("RADIOBJECT_ITEM_TIMEOUT", "2")  # the documented setting; WriteOptions() takes it
    uri, stuck = str(tmp_path / "store"), files[1]
    holder = LeaseHolder(str(stuck))
    try:
        report = run_ingest(uri, _plan(files), options=WriteOptions(workers=2))
        _check_stuck_run(uri, report, stuck)
    finally:
        holder.release()
    _check_resumed(uri, run_ingest(uri, _plan(files), options=WriteOptions(workers=2)), files)


def test_stuck_read_fails_its_subject_thread_pool(
    tmp_path: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read itself blocks (after every check passed) in a thread-pool worker."""
    uri, stuck, event = str(tmp_path / "store"), files[1], threading.Event()
    monkeypatch.setattr(sources, "read_image", blocking(sources.read_image, str(stuck), event_wait(event)))
    try:
        report = run_ingest(uri, _plan(files), options=LIMIT)
        _check_stuck_run(uri, report, stuck)
    finally:
        event.set()
    _check_resumed(uri, run_ingest(uri, _plan(files), options=LIMIT), files)


@pytest.mark.slow
def test_stuck_read_fails_its_subject_process_pool(tmp_path: Path, files: list[Path]) -> None:
    """The read blocks inside a spawned worker process; the pool goes on with the other items."""
    uri, stuck, release = str(tmp_path / "store"), files[1], tmp_path / "release"
    pool = ProcessPoolExecutor(
        2, mp_context=mp.get_context("spawn"), initializer=install_block, initargs=(str(stuck), str(release))
    )
    try:
        report = run_ingest(uri, _plan(files), options=LIMIT, submitter=executor_submitter(pool))
        _check_stuck_run(uri, report, stuck)
    finally:
        release.touch()
        pool.shutdown(wait=True, cancel_futures=True)
    _check_resumed(uri, run_ingest(uri, _plan(files), options=LIMIT, executor="process"), files)


def test_cli_item_timeout_names_the_file(
    tmp_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``radiobject ingest --item-timeout 2``: exit 1, the summary names the stuck file; a re-run
    after the block ends resumes (exit 0) and ``verify`` is clean."""
    monkeypatch.delenv("RADIOBJECT_ITEM_TIMEOUT", raising=False)
    uri, stuck = str(tmp_path / "store"), files[1]
    glob = f"T1w={files[0].parent / '*.nii.gz'}"
    args = ("ingest", uri, "--images", glob, "--subject-pattern", PATTERN, "--no-progress")
    holder = LeaseHolder(str(stuck))
    try:
        res = run_cli(capsys, *args, "--item-timeout", "2")
    finally:
        holder.release()
    assert res.rc == 1, res.err
    (line,) = [ln for ln in res.out.splitlines() if "SourceTimeoutError" in ln]
    assert "T1w/sub-02" in line and str(stuck) in line and "2 s" in line
    assert "RADIOBJECT_ITEM_TIMEOUT" not in __import__("os").environ  # the flag's setting is restored
    assert run_cli(capsys, "verify", uri).rc == 1  # the failed run is visible
    assert run_cli(capsys, *args, "--item-timeout", "2").rc == 0
    assert sorted(RadiObject(uri)["T1w"].obs_ids) == ["sub-01", "sub-02", "sub-03"]
    assert run_cli(capsys, "verify", uri).rc == 0


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_cli_bad_item_timeout_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    with pytest.raises(SystemExit) as exc:
        run_cli(capsys, "ingest", tmp_path / "s", "--images", "T1w=x*.nii", "--item-timeout", value)
    assert exc.value.code == 2
    assert "--item-timeout" in capsys.readouterr().err
