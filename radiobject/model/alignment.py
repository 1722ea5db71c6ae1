"""Checking that a subject's volumes (image, label, other modalities) share one voxel grid."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from radiobject.errors import AlignmentError
from radiobject.formats.image import ImageData


def geometry_of(v: ImageData | Callable[[], ImageData]) -> tuple[tuple[int, ...], np.ndarray]:
    """Spatial shape and affine of an image (loads it when given a loader)."""
    img = v if isinstance(v, ImageData) else v()
    return img.shape[:3], img.affine


def misalignment(volumes: Sequence[tuple[str, str, tuple[int, ...], np.ndarray]], atol: float = 1e-4) -> str | None:
    """Why one subject's volumes do not share a voxel grid, or ``None`` when they do.

    ``volumes``: ``(collection, where, spatial shape, affine)`` each, ``where`` naming the source
    (e.g. ``" (sub-01/t1.nii.gz)"``, or ``""``). The first volume is the reference. The one rule
    behind every alignment check (Python constructors and cohort ingest alike).
    """
    if not volumes:
        return None
    c0, w0, s0, a0 = volumes[0]
    for coll, where, shape, affine in volumes[1:]:
        if tuple(shape[:3]) != tuple(s0[:3]):
            return f"shape {tuple(shape[:3])} in {coll!r}{where} != {tuple(s0[:3])} in {c0!r}{w0}"
        if not np.allclose(affine, a0, atol=atol):
            return (
                f"affine of {coll!r}{where} differs from {c0!r}{w0} by up to "
                f"{np.abs(np.asarray(affine) - np.asarray(a0)).max():.4g}"
            )
    return None


def check_alignment(
    geometry: Mapping[str, Mapping[str, tuple[tuple[int, ...], np.ndarray]]],
    *,
    paths: Mapping[str, Mapping[str, str]] | None = None,
    atol: float = 1e-4,
) -> None:
    """``AlignmentError`` (naming the subject) when a subject's volumes differ in spatial shape or affine."""
    per_subject: dict[str, list[tuple[str, str, tuple[int, ...], np.ndarray]]] = {}
    for coll, per in geometry.items():
        for subject, (shape, affine) in per.items():
            where = f" ({paths[coll][subject]})" if paths else ""
            per_subject.setdefault(subject, []).append((coll, where, shape, affine))
    for subject, volumes in per_subject.items():
        reason = misalignment(volumes, atol)
        if reason is not None:
            raise AlignmentError(subject, reason)


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
