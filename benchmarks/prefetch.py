"""Prefetch benchmark: a 0-worker patch loader with a simulated training step, prefetch off vs on.

    .venv/bin/python benchmarks/prefetch.py [--batches 24] [--rounds 3] [--step sleep|conv] [--s3]
                                            [--backend zarr|tiledb] [--workdir /tmp/rbench-prefetch]

Eight MRI-like volumes (``radiobject.bench.synthetic.mri_like``, 160 x 176 x 128 float32, written
with the store's defaults), random 96^3 patches, batch 2, ``num_workers=0``, no cache. First the
load alone is timed (``prefetch_patches=0``, no step): ``L`` seconds per batch. Then every batch
is followed by a simulated training step of ``L`` seconds (``--step sleep``: ``time.sleep``, the
CPU is free as during a GPU step; ``--step conv``: a small torch 3D convolution timed to about
``L``, which competes for the cores), once with ``prefetch_patches=0`` and with each ``--prefetch`` value
(default: 2 x batch size). With perfect overlap the step hides the reads: the ratio approaches 2.
4 patches per volume
(kept consecutive, no volume buffer: an epoch is 16 batches); epochs follow each other with
``set_epoch``. Configurations are interleaved over ``--rounds``; the best round of each is reported. ``--s3``
repeats the comparison against a store on a local ``moto_server`` (a real S3 server on loopback).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPE = (160, 176, 128)
PATCH = (96, 96, 96)
N_VOLUMES = 8
BATCH = 2
PER_VOLUME = 4


def header() -> str:
    """Date, machine and load."""
    return (
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; machine {platform.node()} {platform.machine()} "
        f"{os.cpu_count()} CPUs {platform.system()} {platform.release()}; python {platform.python_version()}; "
        f"load avg {os.getloadavg()[0]:.2f}"
    )


def make_store(uri: str, backend: str, storage: object = None) -> object:
    from radiobject import RadiObject, WriteOptions
    from radiobject.bench.synthetic import mri_like
    from radiobject.formats.image import ImageData

    images = {
        f"sub-{i:02d}": ImageData(mri_like(SHAPE, seed=i), np.diag([1.0, 1.0, 1.0, 1.0]), {}, f"synthetic/{i}")
        for i in range(N_VOLUMES)
    }
    kw = {"storage": storage} if storage is not None else {}
    return RadiObject.from_images(uri, {"T1w": images}, options=WriteOptions(backend=backend), **kw)


def make_step(kind: str, seconds: float):
    """A callable that takes about ``seconds``: sleeping, or a 3D convolution on a 96^3 batch."""
    if kind == "sleep":
        return lambda batch: time.sleep(seconds)
    import torch

    conv = torch.nn.Conv3d(1, 4, 3, padding=1)
    x = torch.zeros(BATCH, 1, *PATCH)
    with torch.no_grad():
        conv(x)
        t = time.perf_counter()
        conv(x)
        one = max(time.perf_counter() - t, 1e-4)
    reps = max(1, round(seconds / one))

    def step(batch: dict) -> None:
        with torch.no_grad():
            for _ in range(reps):
                conv(batch["image"])

    return step


def run(radi: object, k: int, batches: int, step, epoch: int) -> float:
    """Seconds per batch over ``batches`` batches (after one warm-up batch)."""
    from radiobject.ml import set_epoch
    from radiobject.ml.dataloader import make_loader
    from radiobject.ml.datasets import PatchDataset
    from radiobject.ml.loaders import build_reader
    from radiobject.ml.sampler import RadiSampler

    # the factories' PatchDataset with a subject's patches consecutive, and no volume buffer (a
    # cohort larger than RAM): 4 patches per volume, so an epoch is 16 batches
    dataset = PatchDataset(
        build_reader(radi, ["T1w"], None), PATCH, patches_per_volume=PER_VOLUME, volume_buffer_bytes=0
    )
    sampler = RadiSampler(dataset, 1, 0, seed=1, group_size=PER_VOLUME, prefetch_patches=k)
    loader = make_loader(
        dataset,
        sampler,
        batch_size=BATCH,
        num_workers=0,
        pin_memory=False,
        device=None,
        persistent_workers=None,
        prefetch_factor=None,
        timeout=0,
        multiprocessing_context=None,
    )

    def stream():
        for e in range(epoch * 1000, epoch * 1000 + 1000):
            set_epoch(loader, e)
            yield from loader

    it = stream()
    next(it)
    t0 = time.perf_counter()
    for n, batch in enumerate(it, 1):
        if step is not None:
            step(batch)
        if n >= batches:
            break
    return (time.perf_counter() - t0) / batches


def compare(name: str, radi: object, args: argparse.Namespace) -> None:
    load = min(run(radi, 0, args.batches, None, 100 + r) for r in range(args.rounds))
    step = make_step(args.step, load)
    ks = [0] + [int(k) for k in args.prefetch.split(",")]
    best = dict.fromkeys(ks, float("inf"))
    for r in range(args.rounds):
        for k in ks:  # interleaved: every setting sees the same machine state
            best[k] = min(best[k], run(radi, k, args.batches, step, r))
    print(f"{name:>6}: load alone {load * 1e3:7.1f} ms/batch; with a {args.step} step of ~{load * 1e3:.1f} ms:")
    for k in ks:
        print(
            f"        prefetch_patches={k:<3} {best[k] * 1e3:7.1f} ms/batch  ratio vs 0: {best[0] / best[k]:.2f}x "
            "(ideal 2.00x)",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--step", choices=("sleep", "conv"), default="sleep")
    ap.add_argument("--prefetch", default=f"{2 * BATCH}", help="prefetch_patches values besides 0, e.g. 4,8")
    ap.add_argument("--backend", choices=("zarr", "tiledb"), default="zarr")
    ap.add_argument("--s3", action="store_true", help="also against a moto_server S3 store on loopback")
    ap.add_argument("--workdir", default="/tmp/rbench-prefetch")
    args = ap.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(header())
    print(
        f"{N_VOLUMES} volumes {SHAPE} float32, {args.backend}, patches {PATCH}, batch {BATCH}, 0 workers, no cache; "
        f"{args.batches} batches per pass, best of {args.rounds}",
        flush=True,
    )
    compare("local", make_store(str(work / "radi"), args.backend), args)
    if args.s3:
        from radiobject.bench.s3server import LocalS3

        with LocalS3(bucket="bench") as s3:
            compare("s3", make_store("s3://bench/radi", args.backend, s3.storage), args)
    print(f"end: load avg {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
