"""nibabel's header fix-up log lines (its ``nibabel.global`` logger, whose handler writes to
stderr) do not escape radiobject's NIfTI reads: each fix is kept in ``metadata["header_fixes"]``
and logged under ``radiobject.formats.nifti``; outside radiobject's reads nibabel logs as before."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path as nibabel_data

from radiobject.formats.nifti import load_header, read_nifti

QFAC = "pixdim[0] (qfac) should be 1 (default) or -1; setting qfac to 1"
NEGATIVE = "pixdim[1,2,3] should be positive; setting to abs of pixdim values"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def nibabel_log() -> Iterator[_Records]:
    """What reaches the handlers of nibabel's logger (its own stderr handler among them), every level."""
    logger = logging.getLogger("nibabel.global")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(1)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def _fixed_on_read(path: Path) -> Path:
    img = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.diag([2.0, 1.0, 1.0, 1.0]))
    img.header["pixdim"][0] = 0  # qfac 0 (INFO) and a negative voxel size (level 35, printed by default)
    img.header["pixdim"][1] = -2.0
    nib.save(img, path)
    return path


@pytest.mark.parametrize("name", ["neg.nii", "neg.nii.gz"])
def test_fix_ups_are_kept_and_logged_under_radiobject_not_by_nibabel(
    tmp_path: Path, name: str, nibabel_log: _Records, caplog: pytest.LogCaptureFixture
) -> None:
    path = _fixed_on_read(tmp_path / name)
    with caplog.at_level(logging.INFO, logger="radiobject.formats.nifti"):
        img = read_nifti(path)
        load_header(path)
    assert nibabel_log.messages == []  # was: both lines, twice, on stderr
    assert img.metadata["header_fixes"] == [NEGATIVE, QFAC]
    assert img.metadata["zooms"] == [2.0, 1.0, 1.0]  # nibabel's fix, as before
    ours = [r for r in caplog.records if r.name == "radiobject.formats.nifti"]
    assert [(r.levelno, r.getMessage()) for r in ours] == [
        (35, f"{path}: nibabel fixed the header on read: {NEGATIVE}"),
        (logging.INFO, f"{path}: nibabel fixed the header on read: {QFAC}"),
    ]
    nib.load(path)  # outside radiobject's reads nibabel logs as it always did
    assert NEGATIVE in nibabel_log.messages


def test_a_clean_header_records_no_fixes(tmp_path: Path, nibabel_log: _Records) -> None:
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4), np.uint8), np.eye(4)), tmp_path / "ok.nii.gz")
    assert "header_fixes" not in read_nifti(tmp_path / "ok.nii.gz").metadata and nibabel_log.messages == []


def test_only_the_reading_thread_is_quiet(tmp_path: Path, nibabel_log: _Records) -> None:
    """Reads in worker threads (the ingest's writers) leave nibabel's logging of other threads alone."""
    path = _fixed_on_read(tmp_path / "neg.nii.gz")
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(read_nifti(path).metadata["header_fixes"])) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [[NEGATIVE, QFAC]] * 4 and nibabel_log.messages == []
    nib.load(path)
    assert nibabel_log.messages.count(NEGATIVE) == 1


def test_nibabel_test_data_that_nibabel_fixes_on_read(nibabel_log: _Records) -> None:
    """The one NIfTI of nibabel's own test data whose header nibabel fixes (qfac 0): a CIFTI-2
    file, refused by radiobject's reader, and refused without nibabel's line either."""
    from radiobject.errors import NiftiReadError

    path = os.path.join(str(nibabel_data), "row_major.dconn.nii")
    with pytest.raises(NiftiReadError):
        read_nifti(path)
    assert nibabel_log.messages == []
    nib.load(path)
    assert QFAC in nibabel_log.messages
