"""Synthetic test volumes for storage benchmarks: MRI-like float32 and CT-like int16.

Neither is real anatomy; both have the statistics that decide how storage behaves: a large exact-zero
(MRI) or constant-with-noise (CT air) background, smooth low-frequency tissue texture, and voxel
noise that limits lossless compression. Sizes scale down for tests (``shape=``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: BraTS-size MRI (x, y, z), float32, 35.7 MB.
MRI_SHAPE: tuple[int, int, int] = (240, 240, 155)
#: A CT series (x, y, z), int16, 157 MB.
CT_SHAPE: tuple[int, int, int] = (512, 512, 300)


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open coordinate grids in [-1, 1] along each axis (broadcastable, no full-size copies)."""
    return tuple(
        np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape([-1 if i == a else 1 for i in range(3)])
        # the ignore below: 3 axes; tuple() of a generator is variable-length
        for a, n in enumerate(shape)
    )  # type: ignore[return-value]


def _curve(n: int, rng: np.random.Generator, cells: int) -> np.ndarray:
    """A smooth random 1-D curve of length ``n``: coarse noise, cubic-spline interpolated."""
    k = max(4, min(cells, n // 4))
    knots = rng.standard_normal(k + 2).astype(np.float32)
    return ndimage.zoom(knots, n / (k + 2), order=3, mode="nearest", grid_mode=True)[:n].astype(np.float32)


def smooth_field(shape: tuple[int, int, int], rng: np.random.Generator, cells: int = 12, terms: int = 4) -> np.ndarray:
    """Low-frequency texture in [-1, 1]: a sum of ``terms`` separable products of smooth random
    curves (cheap to build at CT size, unlike a 3-D spline zoom)."""
    field = np.zeros(shape, dtype=np.float32)
    for _ in range(terms):
        a, b, c = (_curve(n, rng, cells) for n in shape)
        field += a[:, None, None] * b[None, :, None] * c[None, None, :]
    field /= max(float(np.abs(field).max()), 1e-6)
    return field


def mri_like(shape: tuple[int, int, int] = MRI_SHAPE, seed: int = 0) -> np.ndarray:
    """A T1-like brain MRI: float32, ~74% exact-zero background, smooth tissue + 2% noise.

    An ellipsoidal "head" holds two intensity classes (grey / white matter-like, split by a smooth
    random field), a brighter rim and Gaussian noise; outside it everything is exactly 0 (skull
    stripped, as in BraTS).
    """
    rng = np.random.default_rng(seed)
    x, y, z = _grid(shape)
    inside = (x / 0.72) ** 2 + (y / 0.86) ** 2 + (z / 0.80) ** 2 <= 1.0
    texture = smooth_field(shape, rng, cells=14)
    white = texture > 0.05
    vol = np.where(white, np.float32(620.0), np.float32(410.0)) + np.float32(60.0) * texture
    vol += rng.standard_normal(shape, dtype=np.float32) * np.float32(12.0)
    vol *= inside
    return np.ascontiguousarray(np.maximum(vol, 0, dtype=np.float32))


def ct_like(shape: tuple[int, int, int] = CT_SHAPE, seed: int = 0) -> np.ndarray:
    """A chest-CT-like volume in HU: int16; -1024 outside the circular field of view, air -1000
    around an elliptic body of fat, soft tissue, two lungs (-850) and bone (spine 700, ribs 450),
    with 12 HU noise inside the field of view."""
    rng = np.random.default_rng(seed)
    x, y, z = _grid(shape)
    x2, y2 = x[:, :, 0], y[:, :, 0]
    body_r = (x2 / 0.84) ** 2 + (y2 / 0.64) ** 2
    base = np.full(body_r.shape, -1000.0, dtype=np.float32)  # z-independent 2-D map
    base[body_r <= 1.0] = 40.0
    base[(body_r > 0.80) & (body_r <= 1.0)] = -100.0
    base[(x2 / 0.09) ** 2 + ((y2 - 0.45) / 0.09) ** 2 <= 1.0] = 700.0
    rib_ring = (body_r > 0.70) & (body_r <= 0.76)
    fov = x2**2 + y2**2 <= 1.0
    soft_tissue = base == 40.0
    texture = smooth_field(shape, rng, cells=10)
    vol = np.empty(shape, dtype=np.float32)
    zs = z.ravel()
    for k in range(shape[2]):  # slab by slab: bounded temporaries
        sl = base.copy()
        sl[soft_tissue] += 25.0 * texture[:, :, k][soft_tissue]
        for cx in (-0.38, 0.38):  # lungs in the upper 70% of the slab
            dz = ((zs[k] - 0.25) / 0.85) ** 2
            if dz < 1.0:
                sl[((x2 - cx) / 0.30) ** 2 + ((y2 + 0.05) / 0.42) ** 2 <= 1.0 - dz] = -850.0
        if np.sin(zs[k] * 40.0) > 0.6:
            sl[rib_ring] = 450.0
        vol[:, :, k] = sl
    vol += rng.standard_normal(shape, dtype=np.float32) * np.float32(12.0)
    vol[~fov] = -1024.0
    return np.clip(np.rint(vol), -1024, 3071).astype(np.int16)


def synthetic_volume(kind: str, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """``"mri"`` or ``"ct"`` at ``scale`` times the full size along each axis (>= 8 voxels)."""
    base = {"mri": MRI_SHAPE, "ct": CT_SHAPE}.get(kind)
    if base is None:
        raise ValueError(f"unknown synthetic volume {kind!r}; choose 'mri' or 'ct'")
    shape = tuple(max(8, round(n * scale)) for n in base)
    # the ignore below: shape has base's 3 entries; tuple() is variable-length
    return (mri_like if kind == "mri" else ct_like)(shape, seed)  # type: ignore[arg-type]
