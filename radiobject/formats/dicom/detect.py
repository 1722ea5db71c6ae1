"""Cheap DICOM detection, for ingest code that accepts any image path (auto-detect DICOM)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from radiobject.formats.dicom.errors import DicomError
from radiobject.formats.dicom.inputs import read_prefix

_MAX_FILES_PROBED = 20


def _file_is_dicom(path: Path) -> bool:
    try:
        head = read_prefix(str(path), 132)  # stat first: FIFOs / devices are never opened
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as gz:
                head = gz.read(132)
    except (OSError, EOFError, DicomError):
        return False
    if head[128:132] == b"DICM":
        return True
    # no preamble / file meta: let pydicom try (it validates SOP class or Rows + PixelData)
    from radiobject.formats.dicom.discover import read_header

    try:
        read_header(path)
    except DicomError:
        return False
    return True


def is_dicom(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a DICOM file (plain or gzip) or a folder holding one.

    Folders are probed recursively, at most 20 files, so a NIfTI / TIFF folder is rejected fast.
    A ``.nii`` / ``.nii.gz`` / ``.tif`` name is never taken for DICOM.
    """
    p = Path(path)
    if p.is_file():  # is_file is stat-based: a FIFO or device is not a file
        name = p.name.lower()
        if name.endswith((".nii", ".nii.gz", ".tif", ".tiff", ".npy", ".zarr", ".json")):
            return False
        return _file_is_dicom(p)
    if p.is_dir():
        probed = 0
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            for f in sorted(filenames):
                if f.upper() == "DICOMDIR" or _file_is_dicom(Path(dirpath) / f):
                    return True
                probed += 1
                if probed >= _MAX_FILES_PROBED:
                    return False
    return False
