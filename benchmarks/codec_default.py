"""Default-codec sweep (issue 12): store size against the ``.nii.gz`` sources, and patch speed.

    .venv/bin/python benchmarks/codec_default.py [--volumes 4] [--patches 120]

For MRI-like (float32 and int16) and CT-like (int16) synthetic volumes (``radiobject.bench.synthetic``),
each codec candidate is written as a radiobject Zarr store with the default chunking; printed per
candidate: store bytes / ``.nii.gz`` bytes (nibabel, gzip level 9 as most tools write) and random
96^3 patch reads per second (no application cache, tensorstore's chunk cache pool set to 0 so
every pass really decodes) as a ratio against ``blosc-lz4:5`` (the former default) measured in the
same run. The machine may be shared: date, machine and load are printed; speed is reported per
CPU-second of the process (all its threads: stable under load) and per wall second (best of 3).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CANDIDATES = ["blosc-lz4:5", "blosc-zstd:1", "blosc-zstd:3", "blosc-zstd:5", "zstd:3"]
PATCH = (96, 96, 96)


def header() -> str:
    """Date, machine and load, printed by every benchmark of issue 12."""
    load = os.getloadavg()
    return (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}  {platform.node()}  "
        f"{platform.processor() or platform.machine()}  {os.cpu_count()} cores  "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def volumes(kind: str, n: int) -> list[np.ndarray]:
    from radiobject.bench.synthetic import ct_like, mri_like

    out = []
    for i in range(n):
        if kind == "mri-f32":
            out.append(mri_like(seed=i))
        elif kind == "mri-i16":
            out.append(np.round(mri_like(seed=i) * 1000).astype(np.int16))
        else:
            out.append(ct_like(seed=i).astype(np.int16))
    return out


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def nii_gz_bytes(vols: list[np.ndarray], work: Path) -> int:
    import nibabel as nib

    total = 0
    for i, v in enumerate(vols):
        p = work / f"v{i}.nii.gz"
        raw = nib.Nifti1Image(v, np.eye(4)).to_bytes()
        p.write_bytes(gzip.compress(raw, compresslevel=6))  # nibabel's / dcm2niix's usual level
        total += p.stat().st_size
    return total


def patch_rate(uri: str, n_vol: int, patches: int, seed: int = 0) -> tuple[float, float]:
    """(patches per CPU-second, patches per wall-second), best of 3 passes each."""
    from radiobject import RadiObject
    from radiobject.ml.reader import VolumeReader

    reader = VolumeReader.from_radi(RadiObject(uri), "img")
    rng = np.random.default_rng(seed)
    shapes = reader.shapes
    draws = [
        (int(s), [int(rng.integers(0, max(1, n - p))) for n, p in zip(shapes[s], PATCH, strict=True)])
        for s in rng.integers(0, n_vol, patches)
    ]
    buf = np.empty((1, *PATCH), np.float32)
    best_cpu = best_wall = 0.0
    for _ in range(3):
        c0, t0 = time.process_time(), time.perf_counter()
        for s, o in draws:
            reader.read_patch_into(s, o, PATCH, buf)
        best_cpu = max(best_cpu, patches / (time.process_time() - c0))
        best_wall = max(best_wall, patches / (time.perf_counter() - t0))
    return best_cpu, best_wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volumes", type=int, default=3)
    ap.add_argument("--patches", type=int, default=100)
    ap.add_argument("--kinds", default="mri-f32,mri-i16")
    args = ap.parse_args(argv)
    from radiobject.storage import zarr_backend

    zarr_backend.CHUNK_CACHE_BYTES = 0  # no hidden decoded-chunk cache: every read decodes
    from radiobject import ImageData, RadiObject, WriteOptions
    from radiobject.storage.base import Codec

    print(header())
    rows = []
    for kind in args.kinds.split(","):
        vols = volumes(kind, args.volumes)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            gz = nii_gz_bytes(vols, work)
            raw = sum(v.nbytes for v in vols)
            base_rate = None
            for cand in CANDIDATES:
                uri = work / cand.replace(":", "_")
                t0 = time.perf_counter()
                RadiObject.from_images(
                    str(uri),
                    {"img": {f"s{i}": ImageData(v, np.eye(4), {}, "synthetic") for i, v in enumerate(vols)}},
                    options=WriteOptions(codec=Codec.parse(cand)),
                )
                write_s = time.perf_counter() - t0
                cpu, wall = patch_rate(str(uri), len(vols), args.patches)
                base_rate = base_rate or (cpu, wall)
                size = du(uri / "collections")
                rows.append((kind, cand, size / gz, cpu / base_rate[0]))
                print(
                    f"{kind:8s} {cand:13s} store/.nii.gz {size / gz:5.2f}  ratio {raw / size:5.2f}x  "
                    f"(.nii.gz {raw / gz:4.2f}x)  {cpu:5.0f} patches/CPU-s x{cpu / base_rate[0]:4.2f}  "
                    f"{wall:5.0f} patches/s x{wall / base_rate[1]:4.2f}  (vs blosc-lz4:5)  write {write_s:4.1f} s",
                    flush=True,
                )
    print(header())
    return 0


if __name__ == "__main__":
    sys.exit(main())
