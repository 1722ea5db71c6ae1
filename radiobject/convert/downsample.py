"""2x block downsampling: mean for intensities, mode for labels (floor-sized output)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["downsample", "downsample_mean", "downsample_mode"]


def _crop_views(block: np.ndarray, factors: Sequence[int]) -> list[np.ndarray]:
    """The strided views, one per offset inside a factor block (2 per halved axis)."""
    if len(factors) != block.ndim or any(f not in (1, 2) for f in factors):
        raise ValueError(f"factors must be 1 or 2 per axis, got {factors} for shape {block.shape}")
    out_shape = [n // f for n, f in zip(block.shape, factors, strict=True)]
    views = [block]
    for axis, f in enumerate(factors):
        if f == 1:
            continue
        nxt = []
        for v in views:
            for off in range(f):
                idx = [slice(None)] * block.ndim
                idx[axis] = slice(off, off + f * out_shape[axis], f)
                nxt.append(v[tuple(idx)])
        views = nxt
    return views


def downsample_mean(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean of each 2-block (axes with factor 2), output size ``n // 2``; integers are rounded
    half up and keep their dtype."""
    views = _crop_views(block, factors)
    n = len(views)
    dtype = block.dtype
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2:
        acc = views[0].astype(np.int32)
        for v in views[1:]:
            acc += v
        acc += n // 2
        acc //= n
        return acc.astype(dtype)
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        acc64 = views[0].astype(np.float64)
        for v in views[1:]:
            acc64 += v
        return np.floor(acc64 / n + 0.5).astype(dtype)
    acc_f = views[0].astype(np.float64)
    for v in views[1:]:
        acc_f += v
    acc_f /= n
    return acc_f.astype(dtype)


def downsample_mode(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Most frequent value of each 2-block (label images); ties go to the first (top-left) voxel,
    so a block of distinct labels keeps its nearest-neighbour value."""
    views = _crop_views(block, factors)
    best = views[0].copy()
    best_count = np.zeros(best.shape, dtype=np.uint8)
    for v in views:
        count = np.zeros(best.shape, dtype=np.uint8)
        for w in views:
            count += v == w
        better = count > best_count
        np.copyto(best, v, where=better)
        np.copyto(best_count, count, where=better)
    return best


def downsample(block: np.ndarray, factors: Sequence[int], labels: bool = False) -> np.ndarray:
    """``downsample_mode`` for labels, else ``downsample_mean``."""
    return downsample_mode(block, factors) if labels else downsample_mean(block, factors)
