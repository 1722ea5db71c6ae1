"""Multi-series TIFFs of the series tests: one file, two image series of different shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile

#: Shapes (Z, Y, X as written) of series 0 and 1 of :func:`two_series`.
SHAPE_0, SHAPE_1 = (5, 32, 24), (7, 16, 12)


def two_series(path: Path, seed: int = 0, dtype: type = np.uint16, high: int = 1000) -> np.ndarray:
    """Writes a TIFF of two image series (:data:`SHAPE_0`, then :data:`SHAPE_1`, both ZYX) and
    returns series 1's array as written (stored voxels are its transpose)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    second = rng.integers(0, high, SHAPE_1).astype(dtype)
    with tifffile.TiffWriter(path) as w:
        w.write(rng.integers(0, high, SHAPE_0).astype(dtype), metadata={"axes": "ZYX"})
        w.write(second, metadata={"axes": "ZYX"})
    return second


def nnunet_tiffs(root: Path, cases: tuple[str, ...] = ("case_a", "case_b")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """An nnU-Net raw dataset whose ``file_ending`` is ``.tif``: per case one channel and a label,
    each a TIFF of two series. Returns ``{case: (image series 1, label series 1)}``."""
    want = {}
    for i, case in enumerate(cases):
        img = two_series(root / "imagesTr" / f"{case}_0000.tif", seed=2 * i)
        lab = two_series(root / "labelsTr" / f"{case}.tif", seed=2 * i + 1, dtype=np.uint8, high=3)
        want[case] = (img, lab)
    ds = {"channel_names": {"0": "img"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": len(cases)}
    (root / "dataset.json").write_text(json.dumps({**ds, "file_ending": ".tif"}))
    return want
