"""Hostile DICOM trees: FIFOs, devices, sockets, unreadable folders / files, gzip bombs, huge files,
missing slices. Nothing may hang, run out of memory, or give a silently shorter series."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from radiobject.formats.dicom import discover_series, is_dicom, read_dicom_folder, read_dicom_series
from radiobject.formats.dicom import inputs as dicom_inputs
from radiobject.formats.dicom.errors import (
    DicomError,
    InputTooLargeError,
    NotDicomError,
    UnreadableInputError,
)
from radiobject.ingest import plan_from_dicom_root
from tests.formats.dicom._synth import write_tilted_ct

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """Fail (never hang) when a read blocks: SIGALRM after 20 s."""
    if sys.platform == "win32":
        yield
        return

    def boom(signum: int, frame: object) -> None:
        raise TimeoutError("DICOM read blocked (FIFO / device opened?)")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture()
def series(tmp_path: Path) -> Path:
    folder = tmp_path / "subj" / "ct"
    write_tilted_ct(folder, tilt_deg=0.0, steps_mm=[2.0] * 5, rows=16, cols=12, shuffle=False)
    return folder


def test_fifo_device_socket_skipped_never_opened(series: Path) -> None:
    os.mkfifo(series / "pipe")
    (series / "sub").mkdir()
    os.mkfifo(series / "sub" / "pipe2.dcm")
    os.symlink("/dev/zero", series / "zero.dcm")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock_path = series / "s.sock"
    try:
        sock.bind(str(sock_path))
    except OSError:  # path too long for AF_UNIX on some systems
        sock_path = None
    try:
        disc = discover_series(series)
        reasons = {Path(p).name: r for p, r in disc.skipped_files}
        assert "FIFO" in reasons["pipe"] and "FIFO" in reasons["pipe2.dcm"]
        assert "device" in reasons["zero.dcm"]
        if sock_path is not None:
            assert "socket" in reasons["s.sock"]
        img = read_dicom_series(series)
        assert img.shape == (12, 16, 6)
        assert is_dicom(series)
    finally:
        sock.close()


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_device_as_input_refused(path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} absent")
    with pytest.raises(DicomError, match="not a regular file"):
        read_dicom_series([path])
    with pytest.raises(NotDicomError, match="device"):
        dicom_inputs.check_regular(path)
    assert not is_dicom(path)


def test_fifo_as_input_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    with pytest.raises(DicomError, match="FIFO"):
        read_dicom_series([str(tmp_path / "p")])
    with pytest.raises(DicomError):
        read_dicom_series(tmp_path / "p")


def test_unlistable_subfolder_fails_the_series(series: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = series / "more"
    sub.mkdir()
    files = sorted(series.glob("*.dcm"))
    shutil.move(str(files[-1]), sub / files[-1].name)
    real = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        if os.fspath(path) == str(sub):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(dicom_inputs.os, "scandir", scandir)
    with pytest.raises(UnreadableInputError, match="more") as info:
        read_dicom_series(series)
    assert info.value.path == str(sub) and "Permission denied" in info.value.reason
    with pytest.raises(UnreadableInputError):
        read_dicom_folder(series)


@pytest.mark.skipif(IS_ROOT, reason="root reads chmod 000 folders")
def test_chmod_000_subfolder_fails_the_series(series: Path) -> None:
    sub = series / "locked"
    sub.mkdir()
    f = sorted(series.glob("*.dcm"))[0]
    shutil.move(str(f), sub / f.name)
    sub.chmod(0)
    try:
        with pytest.raises(UnreadableInputError, match="locked"):
            read_dicom_series(series)
    finally:
        sub.chmod(0o755)


def test_unreadable_file_fails_the_series(series: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = str(sorted(series.glob("*.dcm"))[2])
    real_open = open

    def fake_open(path: object, *args: object, **kwargs: object) -> object:
        if os.fspath(path) == target:  # type: ignore[arg-type]  # the stand-in takes what open() takes
            raise PermissionError(13, "Permission denied", target)
        # the ignore below: passes open()'s arguments through unchanged
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(dicom_inputs, "open", fake_open, raising=False)
    with pytest.raises(UnreadableInputError) as info:
        read_dicom_series(series)
    assert info.value.path == target


def test_dangling_link_fails_the_series(series: Path) -> None:
    os.symlink(series / "gone.dcm", series / "IM9999.dcm")
    with pytest.raises(UnreadableInputError, match="IM9999"):
        read_dicom_series(series)


def test_subject_with_unreadable_folder_is_a_problem_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    for sid in ("a", "b"):
        write_tilted_ct(root / sid / "ct", tilt_deg=0.0, steps_mm=[2.0] * 3, rows=8, cols=8)
    bad = root / "b" / "ct"
    real = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        if os.fspath(path) == str(bad):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(dicom_inputs.os, "scandir", scandir)
    plan = plan_from_dicom_root(root)
    assert [t.subject_id for t in plan.tasks] == ["a"]
    assert [(p.subject_id, p.source) for p in plan.problems] == [("b", str(bad))]


def test_gzip_bomb_refused(series: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIOBJECT_MAX_IMAGE_BYTES", str(8 << 20))
    with gzip.open(series / "bomb.dcm.gz", "wb") as gz:
        block = b"\0" * (1 << 20)
        for _ in range(40):
            gz.write(block)
    assert (series / "bomb.dcm.gz").stat().st_size < (1 << 20)
    with pytest.raises(InputTooLargeError, match="bomb.dcm.gz"):
        discover_series(series)


def test_huge_file_refused_up_front(series: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIOBJECT_MAX_IMAGE_BYTES", str(8 << 20))
    with open(series / "huge.dcm", "wb") as fh:  # sparse: no disk used
        fh.truncate(64 << 30)
    with pytest.raises(InputTooLargeError, match="huge.dcm"):
        read_dicom_series(series)


def test_series_over_budget_refused_before_decoding(series: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIOBJECT_MAX_IMAGE_BYTES", str(3000))  # files are ~0.9 kB, the stack 4.6 kB
    with pytest.raises(InputTooLargeError, match="would need"):
        read_dicom_series(series)


def test_missing_slice_is_a_visible_warning(series: Path) -> None:
    files = sorted(series.glob("*.dcm"))
    files[3].unlink()
    img = read_dicom_series(series)
    md = img.metadata
    assert img.shape[2] == 5
    assert md["slice_gaps"] == [{"after_slice": 2, "step_mm": 4.0, "missing_estimate": 1}]
    assert md["missing_instance_numbers"] == [4] and md["n_missing_instance_numbers"] == 1
    text = " ".join(md["warnings"])
    assert "missing slices" in text and "instance number" in text


def test_instance_number_gap_without_position_gap(tmp_path: Path) -> None:
    import pydicom

    write_tilted_ct(tmp_path, tilt_deg=0.0, steps_mm=[2.0] * 3, rows=8, cols=8, shuffle=False)
    for f in sorted(tmp_path.glob("*.dcm"))[2:]:
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = int(ds.InstanceNumber) + 3
        ds.save_as(f)
    md = read_dicom_series(tmp_path).metadata
    assert md["slice_gaps"] == [] and md["missing_instance_numbers"] == [3, 4, 5]
    assert any("instance number" in w for w in md["warnings"])


def test_complete_series_has_no_gap_records(series: Path) -> None:
    md = read_dicom_series(series).metadata
    assert md["slice_gaps"] == [] and md["missing_instance_numbers"] == []
    assert np.asarray(read_dicom_series(series).array).shape == (12, 16, 6)
