"""Which reader a file needs (by content, not only by name), and reading any supported image.

NIfTI-1/2 (also gzip), DICOM (a file with or without preamble, or a folder holding one series) and
TIFF / OME-TIFF are told apart by their first bytes; a name that promises another format than the
content is an error, so a mislabelled file is never half-read by the wrong reader.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from radiobject.errors import ImageReadError
from radiobject.formats.image import ImageData
from radiobject.formats.inputs import regular_file_size

FORMATS: tuple[str, ...] = ("auto", "nifti", "dicom", "tiff")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _suffix_format(path: str) -> str | None:
    low = path.lower()
    if low.endswith((".nii", ".nii.gz")):
        return "nifti"
    if low.endswith((".dcm", ".dcm.gz", ".ima")):
        return "dicom"
    if low.endswith((".tif", ".tiff", ".svs", ".ndpi", ".btf")):
        return "tiff"
    return None


def _content_format(head: bytes) -> str | None:
    if len(head) >= 4 and int.from_bytes(head[:4], "little") in (348, 540):
        return "nifti"
    if len(head) >= 4 and int.from_bytes(head[:4], "big") in (348, 540):
        return "nifti"
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:4] in _TIFF_MAGIC:
        return "tiff"
    if len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[4:6] in (b"UL", b"OB", b"UI", b"CS", b"SH"):
        return "dicom"  # no preamble, explicit VR group 0002 / 0008
    return None


def detect_format(path: str) -> str:
    """``nifti`` / ``dicom`` / ``tiff`` from the file content (a folder is a DICOM series).

    Raises ``ImageReadError`` naming the file when it does not exist, cannot be read, is none of
    these formats, or its name promises a different format than its content.
    """
    if os.path.isdir(path):
        return "dicom"
    regular_file_size(path)  # a FIFO / device / socket is refused before it is opened
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        if head[:2] == b"\x1f\x8b":
            try:
                with gzip.open(path, "rb") as g:
                    head = g.read(132)
            except (OSError, EOFError, zlib.error) as exc:
                raise ImageReadError(path, f"gzip file cannot be decompressed ({exc})") from exc
    except OSError as exc:
        raise ImageReadError(path, f"cannot read ({exc})") from exc
    by_content = _content_format(head)
    by_name = _suffix_format(path)
    if by_content is None:
        if not head:
            raise ImageReadError(path, "empty file")
        raise ImageReadError(path, "wrong format: not a NIfTI, DICOM or TIFF file")
    if by_name is not None and by_name != by_content:
        raise ImageReadError(path, f"wrong format: the name says {by_name} but the content is {by_content}")
    return by_content


def canonicalize(image: ImageData) -> ImageData:
    """The image with its first three axes permuted / flipped to RAS+ (nibabel's rule), affine updated."""
    from nibabel.orientations import apply_orientation

    from radiobject.geometry import orientation, to_canonical

    data = np.asarray(image.array)
    ornt, affine, _ = to_canonical(image.affine, data.shape)
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return image
    meta = dict(image.metadata)
    meta.setdefault("original_orientation", orientation(image.affine))
    return ImageData(np.ascontiguousarray(apply_orientation(data, ornt)), affine, meta, image.source)


def read_image(
    path: str,
    fmt: str = "auto",
    canonical: bool = False,
    files: Sequence[str] = (),
    dicom_options: Mapping[str, Any] | None = None,
    tiff_series: int | None = None,
) -> ImageData:
    """Reads one volume (NIfTI file, DICOM series folder / files, or TIFF); RAS+ when ``canonical``.

    ``dicom_options``: keyword options of ``read_dicom_series`` (e.g. ``philips_scaling``).
    ``tiff_series``: the series of a TIFF to read; ``None`` = its one image series, and a TIFF of
    several image series is a ``TiffError`` listing them (see ``formats.tiff.read_tiff``).
    """
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "nifti":
        from radiobject.formats.nifti import read_nifti

        return read_nifti(path, reorient=canonical)
    if fmt == "dicom":
        from radiobject.formats.dicom import read_dicom_series

        image = read_dicom_series(list(files) if files else path, **dict(dicom_options or {}))
    elif fmt == "tiff":
        from radiobject.formats.tiff import read_tiff

        image = read_tiff(path, tiff_series)
    else:
        raise ImageReadError(path, f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return canonicalize(image) if canonical else image
