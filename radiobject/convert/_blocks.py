"""The work blocks of the region conversion (:mod:`radiobject.convert.pipeline`): the block grid of
a level, the level-0 writer (TIFF tiles -> one shard, with level 1 fused from memory), the writer
of a downsampled level (from the level below, in sub-blocks) and the omero display windows.

The writers run in the conversion's worker pool (threads or processes), one block each.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from itertools import product
from typing import Any

import numpy as np

from radiobject.convert.downsample import downsample
from radiobject.convert.output import OutputTarget
from radiobject.convert.source import RegionSource
from radiobject.convert.writer import open_level

__all__ = ["omero_windows", "work_blocks", "write_downsampled", "write_level0"]


def work_blocks(axes: str, shape: tuple[int, ...], edge: tuple[int, ...], c_group: int) -> Iterator[dict[str, Any]]:
    """Work blocks: an int for t / z (and c unless grouped), slices for y / x (one shard each)."""
    ranges: list[list[int | slice]] = []
    for a, n, e in zip(axes, shape, edge, strict=True):
        if a in "yx":
            ranges.append([slice(i, min(i + e, n)) for i in range(0, n, e)])
        elif a == "c" and c_group > 1:
            ranges.append([slice(i, min(i + c_group, n)) for i in range(0, n, c_group)])
        else:
            ranges.append(list(range(n)))
    for combo in product(*ranges):
        yield dict(zip(axes, combo, strict=True))


def write_level0(
    source: RegionSource, path: OutputTarget, key: dict[str, Any], fuse: bool = False, labels: bool = False
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Reads one block from the TIFFs and writes it (and, fused, its level-1 half from memory);
    returns (channels, per-channel min, max)."""
    data = source.read(key)
    arr = open_level(path, 0)
    arr[tuple(key[a] for a in source.axes)] = data
    kept = [a for a in source.axes if not isinstance(key[a], int)]
    if fuse:
        small = downsample(data, [2 if a in "yx" else 1 for a in kept], labels)
        key1 = dict(key)
        for a in "yx":
            start = key[a].start // 2
            key1[a] = slice(start, start + small.shape[kept.index(a)])
        open_level(path, 1)[tuple(key1[a] for a in source.axes)] = small
    if "c" in kept:
        ci = kept.index("c")
        other = tuple(i for i in range(data.ndim) if i != ci)
        c = key["c"]
        channels = list(range(c.start, c.stop))
        if data.dtype.kind == "f":  # NaN-aware (an all-NaN channel gives a non-finite, dropped later)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return channels, np.nanmin(data, axis=other), np.nanmax(data, axis=other)
        return channels, data.min(axis=other), data.max(axis=other)
    channel = key.get("c", 0)
    if data.dtype.kind == "f":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return [channel], np.array([np.nanmin(data)]), np.array([np.nanmax(data)])
    return [channel], np.array([data.min()]), np.array([data.max()])


def write_downsampled(
    axes: str, path: OutputTarget, level: int, key: dict[str, Any], labels: bool, downsample_z: bool, sub: int
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Computes one block of ``level`` from ``level - 1`` in sub-blocks of ``sub`` output pixels."""
    src, dst = open_level(path, level - 1), open_level(path, level)
    ys, xs = key["y"], key["x"]
    out = np.empty((ys.stop - ys.start, xs.stop - xs.start), dtype=dst.dtype)
    for y0 in range(ys.start, ys.stop, sub):
        for x0 in range(xs.start, xs.stop, sub):
            y1, x1 = min(y0 + sub, ys.stop), min(x0 + sub, xs.stop)
            read_key = []
            factors = []
            for a in axes:
                if a == "y":
                    read_key.append(slice(2 * y0, 2 * y1))
                    factors.append(2)
                elif a == "x":
                    read_key.append(slice(2 * x0, 2 * x1))
                    factors.append(2)
                elif a == "z" and downsample_z:
                    read_key.append(slice(2 * key["z"], 2 * key["z"] + 2))
                    factors.append(2)
                else:
                    read_key.append(key[a])
            block = np.asarray(src[tuple(read_key)])
            small = downsample(block, factors, labels)
            if small.ndim == 3:
                small = small[0]
            out[y0 - ys.start : y1 - ys.start, x0 - xs.start : x1 - xs.start] = small
    dst[tuple(key[a] for a in axes)] = out
    return [], np.empty(0), np.empty(0)


def omero_windows(dtype: np.dtype, lo: np.ndarray, hi: np.ndarray) -> list[tuple[float, float, float, float]]:
    """omero windows: (type min, type max, data min, data max) per channel; finite JSON numbers."""
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), hi, lo)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        tmin, tmax = float(info.min), float(info.max)
    else:
        tmin, tmax = float(lo.min()), float(hi.max())
    return [(tmin, tmax, float(a), float(b)) for a, b in zip(lo, hi, strict=True)]
