"""Checking that a subject's volumes (image, label, other modalities) share one voxel grid."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from radiobject.errors import AlignmentError
from radiobject.formats.image import ImageData


def geometry_of(v: ImageData | Callable[[], ImageData]) -> tuple[tuple[int, ...], np.ndarray]:
    """Spatial shape and affine of an image (loads it when given a loader)."""
    img = v if isinstance(v, ImageData) else v()
    return img.shape[:3], img.affine


def check_alignment(
    geometry: Mapping[str, Mapping[str, tuple[tuple[int, ...], np.ndarray]]],
    *,
    paths: Mapping[str, Mapping[str, str]] | None = None,
    atol: float = 1e-4,
) -> None:
    """``AlignmentError`` when a subject's volumes differ in (spatial) shape or affine."""
    first: dict[str, tuple[str, tuple[int, ...], np.ndarray]] = {}
    for coll, per in geometry.items():
        for subject, (shape, affine) in per.items():
            if subject not in first:
                first[subject] = (coll, shape, affine)
                continue
            c0, s0, a0 = first[subject]
            where = ""
            if paths:
                where = f" ({paths[c0][subject]} vs {paths[coll][subject]})"
            if tuple(shape[:3]) != tuple(s0[:3]):
                raise AlignmentError(subject, f"shape {tuple(shape)} in {coll!r} != {tuple(s0)} in {c0!r}{where}")
            if not np.allclose(affine, a0, atol=atol):
                raise AlignmentError(subject, f"affine of {coll!r} differs from {c0!r}{where}")


def file_geometry(path: str, fmt: str = "auto", canonical: bool = False) -> tuple[tuple[int, ...], np.ndarray]:
    """Spatial shape and affine of an image file: from the header for NIfTI, else by reading it."""
    from radiobject.formats.detect import detect_format, read_image
    from radiobject.geometry import to_canonical

    if (fmt if fmt != "auto" else detect_format(path)) == "nifti":
        from radiobject.formats.nifti import load_header

        img = load_header(path)
        shape, affine = tuple(int(s) for s in img.shape), np.asarray(img.affine, dtype=np.float64)
        if canonical:
            _, affine, shape = to_canonical(affine, shape)
        return shape[:3], affine
    image = read_image(path, fmt, canonical)
    return image.shape[:3], image.affine
