"""Tiny synthetic stores for the ml tests: voxel values encode (subject, x, y, z) so crops are checkable."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radiobject import RadiObject, WriteOptions
from radiobject.formats.image import ImageData


def coded_volume(subject: int, shape: tuple[int, int, int], offset: float = 0.0) -> np.ndarray:
    """value = 1e5 * subject + 1e4-free code: x * 900 + y * 30 + z (+ offset), exact in float32."""
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return (100_000 * subject + x * 900 + y * 30 + z + offset).astype(np.float32)


def decode_origin(value: float) -> tuple[int, tuple[int, int, int]]:
    """Inverse of ``coded_volume`` for one voxel (offset 0)."""
    v = int(round(value))
    subject, rest = divmod(v, 100_000)
    x, rest = divmod(rest, 900)
    y, z = divmod(rest, 30)
    return subject, (x, y, z)


def make_store(
    root: Path,
    backend: str = "zarr",
    n: int = 4,
    shape: tuple[int, int, int] = (20, 24, 16),
    *,
    empty_label: tuple[int, ...] = (),
    chunks: tuple[int, int, int] | None = (8, 8, 8),
) -> RadiObject:
    """A store with collections T1w, FLAIR (T1w + 0.5) and seg (a small cube of label 1 and 2)."""
    affine = np.diag([1.0, 1.2, 2.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 3.0]
    t1, flair, seg = {}, {}, {}
    for i in range(n):
        sid = f"sub-{i:02d}"
        t1[sid] = ImageData(coded_volume(i, shape), affine, {}, f"synthetic/{sid}/T1w")
        flair[sid] = ImageData(coded_volume(i, shape, 0.5), affine, {}, f"synthetic/{sid}/FLAIR")
        lab = np.zeros(shape, np.uint8)
        if i not in empty_label:
            c = 2 + i % 5
            lab[c : c + 3, c : c + 3, 2:5] = 1
            lab[c + 5 : c + 7, c : c + 2, 6:8] = 2
        seg[sid] = ImageData(lab, affine, {}, f"synthetic/{sid}/seg")
    return RadiObject.from_images(
        str(root), {"T1w": t1, "FLAIR": flair, "seg": seg}, options=WriteOptions(backend=backend, chunks=chunks)
    )
