"""Regions of a volume as the readers use them: slices from an origin and a size, the part of a
patch inside the volume, padding, and the dtype labels are delivered in. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: A region: one ``slice`` per axis.
Region = tuple[slice, ...]


def as_region(origin: Sequence[int], size: Sequence[int]) -> Region:
    """``origin`` / ``size`` -> a tuple of slices (no clipping)."""
    return tuple(slice(int(o), int(o) + int(s)) for o, s in zip(origin, size, strict=True))


def _patch_slices(
    origin: Sequence[int] | np.ndarray, patch_size: Sequence[int], shape: Sequence[int]
) -> tuple[Region, Region, bool]:
    """``sampling.patch_slices`` in plain Python (the per-patch hot path), + whether the patch lies inside."""
    if len(origin) != len(shape) or len(patch_size) != len(shape):
        raise ValueError(f"origin {tuple(origin)!r} and patch_size {tuple(patch_size)!r} must have {len(shape)} values")
    src, dst, inside = [], [], True
    for o, p, n in zip(origin, patch_size, shape, strict=True):
        o, p = int(o), int(p)
        if p < 1:
            raise ValueError(f"patch_size must be {len(shape)} positive ints, got {tuple(patch_size)!r}")
        lo = min(max(o, 0), n)
        hi = max(min(max(o + p, 0), n), lo)
        src.append(slice(lo, hi))
        dst.append(slice(lo - o, hi - o))
        inside = inside and lo - o == 0 and hi - o == p
    return tuple(src), tuple(dst), inside


def _label_dtype(data: np.ndarray, collection: str = "") -> np.ndarray:
    """``data`` in the integer dtype labels are delivered in; float labels must hold whole numbers."""
    if data.dtype == np.bool_:
        return data.astype(np.uint8)
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data) | (data != np.rint(data)) if data.size else np.zeros(0, bool)
        if bad.any():
            from radiobject.ml.errors import LabelValueError

            raise LabelValueError(
                f"label collection {collection!r} holds non-integer values (e.g. {float(data[bad].flat[0])!r}; "
                f"{int(bad.sum())} voxel(s) of this region): a probability or intensity map, not a label map; "
                "store labels as integers, or pass it in modalities"
            )
        return data.astype(np.int64)
    if data.dtype.kind == "u" and data.dtype.itemsize >= 4:
        return data.astype(np.int64)
    if data.dtype.kind == "u" and data.dtype.itemsize == 2:
        return data.astype(np.int32)
    return data


def _pad_into(data: np.ndarray, dst: Region, patch_size: Sequence[int]) -> np.ndarray:
    out = np.zeros((data.shape[0], *[int(p) for p in patch_size]), dtype=data.dtype)
    out[(slice(None), *dst)] = data
    return out
