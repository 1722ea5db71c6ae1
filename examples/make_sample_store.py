"""A tiny synthetic cohort (T1w, FLAIR, seg) for the examples and the benchmark; no downloads.

python examples/make_sample_store.py --store /tmp/sample_store --subjects 8 --shape 64 64 48
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout as written

from radiobject import ImageData, RadiObject, WriteOptions


def synthetic_subject(i: int, shape: tuple[int, int, int], seed: int = 0) -> dict[str, ImageData]:
    """One subject: a bright ellipsoid 'brain', a sphere 'lesion' (label 1) with a core (label 2)."""
    rng = np.random.default_rng([seed, i])
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij"))
    brain = (grid**2).sum(0) < 0.8
    centre = rng.uniform(-0.4, 0.4, 3).astype(np.float32)[:, None, None, None]
    dist = np.sqrt(((grid - centre) ** 2).sum(0))
    radius = rng.uniform(0.12, 0.25)
    seg = np.zeros(shape, np.uint8)
    seg[(dist < radius) & brain] = 1
    seg[(dist < radius / 2) & brain] = 2
    t1 = (brain * 100 + seg * 40 + rng.normal(0, 5, shape)).astype(np.float32)
    flair = (brain * 80 + (seg > 0) * 90 + rng.normal(0, 5, shape)).astype(np.float32)
    affine = np.diag([1.0, 1.0, 1.2, 1.0])
    src = f"synthetic:sub-{i:03d}"
    return {
        "T1w": ImageData(t1, affine, {}, src),
        "FLAIR": ImageData(flair, affine, {}, src),
        "seg": ImageData(seg, affine, {}, src),
    }


def make_sample_store(
    path: str, subjects: int = 8, shape: tuple[int, int, int] = (64, 64, 48), backend: str = "zarr", seed: int = 0
) -> RadiObject:
    """Writes the cohort at ``path`` (a new store) and returns it."""
    images: dict[str, dict[str, ImageData]] = {"T1w": {}, "FLAIR": {}, "seg": {}}
    for i in range(subjects):
        for name, img in synthetic_subject(i, shape, seed).items():
            images[name][f"sub-{i:03d}"] = img
    return RadiObject.from_images(path, images, options=WriteOptions(backend=backend))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 64, 48))
    ap.add_argument("--backend", default="zarr", choices=("zarr", "tiledb"))
    args = ap.parse_args(argv)
    radi = make_sample_store(args.store, args.subjects, tuple(args.shape), args.backend)
    print(radi)


if __name__ == "__main__":
    main()
