"""Synthetic tiled multi-channel TIFFs for tests and benchmarks, written tile by tile
(memory stays at one tile whatever the image size)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import tifffile

__all__ = ["synthetic_tile", "write_synthetic_tiff"]


def synthetic_tile(c: int, y0: int, x0: int, tile: int, dtype: np.dtype, noise: np.ndarray) -> np.ndarray:
    """A microscopy-like tile: smooth per-channel blobs plus fixed low-amplitude noise."""
    yy = (np.arange(y0, y0 + tile, dtype=np.float32) / 700.0)[:, None]
    xx = (np.arange(x0, x0 + tile, dtype=np.float32) / 900.0)[None, :]
    base = (np.sin(yy * (1.0 + 0.3 * c)) * np.cos(xx * (1.0 + 0.2 * c)) + 1.0) * 800.0 + 100.0 * c
    out = base + noise[:tile, :tile]
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        out = np.clip(out, info.min, info.max)
    return out.astype(dtype)


def write_synthetic_tiff(
    path: str | os.PathLike[str],
    channels: int,
    height: int,
    width: int,
    tile: int = 512,
    dtype: str = "uint16",
    compression: str | None = None,
    seed: int = 0,
) -> int:
    """Writes a tiled ``(channels, height, width)`` OME-TIFF tile by tile; returns its pixel bytes."""
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 30.0, size=(tile, tile)).astype(np.float32)

    def tiles() -> Iterator[np.ndarray]:
        for c in range(channels):
            for y0 in range(0, height, tile):
                for x0 in range(0, width, tile):
                    yield synthetic_tile(c, y0, x0, tile, dt, noise)

    tifffile.imwrite(
        path,
        tiles(),
        shape=(channels, height, width),
        dtype=dt,
        tile=(tile, tile),
        compression=compression,
        bigtiff=channels * height * width * dt.itemsize > 2**31,
        ome=True,
        metadata={
            "axes": "CYX",
            "PhysicalSizeX": 0.325,
            "PhysicalSizeY": 0.325,
            "Channel": {"Name": [f"marker{c}" for c in range(channels)]},
        },
    )
    return channels * height * width * dt.itemsize
