"""A FIFO (or a device) planted in place of any file of a store never hangs a reader or ``verify``:
each file of a small store, both backends, is replaced in turn by a FIFO; reading every volume
either gives exactly the stored voxels (the file was not needed) or a typed ``RadiObjectError``
within seconds, and ``verify`` reports every replaced file except the lock files."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from radiobject import RadiObject
from radiobject.errors import RadiObjectError, UnsafePathError
from radiobject.formats.image import ImageData
from radiobject.model.integrity import verify_store
from radiobject.model.options import WriteOptions
from radiobject.storage.locks import LOCK_NAME, write_lock

SUBJECTS = ("s0", "s1")


def _voxels(i: int) -> np.ndarray:
    return (np.arange(24 * 20 * 12, dtype=np.int16).reshape(24, 20, 12) * (i + 1)).astype(np.int16)


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def fire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _read_all(root: Path) -> None:
    radi = RadiObject(str(root))
    for i, s in enumerate(SUBJECTS):
        np.testing.assert_array_equal(radi["CT"].loc[s].to_numpy(), _voxels(i))


@pytest.mark.parametrize("backend", ["zarr", "tiledb"])
def test_a_fifo_in_place_of_any_store_file_is_typed_never_a_hang(tmp_path: Path, backend: str) -> None:
    base = tmp_path / "base"
    images = {"CT": {s: ImageData(_voxels(i), np.eye(4), {}, f"syn/{s}") for i, s in enumerate(SUBJECTS)}}
    RadiObject.from_images(str(base), images, options=WriteOptions(backend=backend))
    files = sorted(p.relative_to(base) for p in base.rglob("*") if p.is_file())
    assert len(files) > 10
    typed = 0
    for rel in files:
        work = tmp_path / "work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work)
        (work / rel).unlink()
        os.mkfifo(work / rel)
        with _deadline(20):  # a blocking open of the FIFO would raise TimeoutError here
            try:
                _read_all(work)
            except RadiObjectError:
                typed += 1
            report = verify_store(str(work))
        if rel.name != LOCK_NAME:
            assert not report.ok, f"{rel}: verify passed with a FIFO in its place"
    assert typed >= 4, typed  # at least the volume data and records of both subjects were needed


def test_a_lock_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    os.mkfifo(root / LOCK_NAME)
    with _deadline(10), pytest.raises(UnsafePathError, match="not a regular file"), write_lock(str(root)):
        pass
