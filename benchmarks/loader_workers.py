"""Training loader with 0 / 1 / 2 workers, threads and processes (issue 12, figure c, re-measured).

    .venv/bin/python benchmarks/loader_workers.py [--volumes 8] [--patches 160] [--patch 64] [--contexts ...]

Cohort: ``--volumes`` MRI-like float32 volumes (``radiobject.bench.synthetic.mri_like``) of
``--shape`` (default 160x192x144, 17.7 MB each: the cohort exceeds tensorstore's 64 MB chunk pool),
written with the store's defaults; random ``--patch``^3 patches, batch ``--batch`` (default 2), no
cache, ``--per-volume`` patches per subject per epoch in random order (``PatchDataset`` without
its per-process volume buffer, so every patch is a store read; built with ``ml.dataloader.make_loader``, the factories'
path). All configurations run in **one** process, in this order,
so the process-worker rows see what a training script sees: a parent that has already read through
tensorstore (the 0-worker row runs first).

* ``0 workers``: batches built in the main process (the reference, = 1.00);
* ``1 / 2 threads``: ``worker_mode="threads"``;
* ``1 / 2 processes (<context>)``: ``worker_mode="processes"`` with ``multiprocessing_context``
  ``fork`` (children of a process that used tensorstore read through zarr-python), ``forkserver``,
  ``spawn``, or ``auto`` (the loader's default: ``None``).

Each loader has persistent workers and makes ``--passes`` passes of ``--patches`` patches: the
first includes worker start-up (reported as ``start s``: seconds to the first batch), the rate is
the best of the later passes; ``main CPU ms/patch`` is the CPU time of the main process (all its
threads) per patch in the best later pass: with worker processes, what receiving batches costs it.
Ratios are against 0 workers of the same run. Date, machine and load
are printed: the machine may be shared with other work.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.codec_default import header


def prepare(work: Path, n: int, shape: tuple[int, int, int]) -> Path:
    """Writes the cohort once (``work/ready`` marks it done); returns the store path."""
    import numpy as np

    from radiobject import ImageData, RadiObject
    from radiobject.bench.synthetic import mri_like

    store = work / f"store-{n}-{'x'.join(map(str, shape))}"
    if (store / "ready").exists():
        return store
    imgs = {f"s{i:02d}": ImageData(mri_like(shape, seed=i), np.eye(4), {}, "synthetic") for i in range(n)}
    RadiObject.from_images(str(store), {"img": imgs})
    (store / "ready").write_text("ok")
    return store


def measure(
    store: Path,
    workers: int,
    mode: str,
    context: str | None,
    patch: int,
    patches: int,
    passes: int,
    per_volume: int,
    batch_size: int = 2,
) -> dict:
    """Patches/s (best pass after the first) and seconds to the first batch of one loader."""
    from radiobject import RadiObject
    from radiobject.ml.dataloader import make_loader
    from radiobject.ml.datasets import PatchDataset
    from radiobject.ml.distributed import set_epoch
    from radiobject.ml.loaders import build_reader
    from radiobject.ml.sampler import RadiSampler

    reader = build_reader(RadiObject(str(store)), "img", None)
    # per_volume patches per subject, no per-process volume buffer (every patch is a store read)
    dataset = PatchDataset(reader, (patch,) * 3, patches_per_volume=per_volume, seed=1, volume_buffer_bytes=0)
    loader = make_loader(
        dataset,
        RadiSampler(dataset, 1, 0, shuffle=True, seed=1),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=False,
        device=None,
        persistent_workers=workers > 0,
        prefetch_factor=None,
        timeout=120 if workers and mode == "processes" else 0,
        multiprocessing_context=None if context in (None, "auto") else context,
        worker_mode=mode if workers else "auto",
    )
    per_epoch = len(loader.dataset)
    rates, cpu, start = [], [], float("nan")
    epoch = 0
    for p in range(passes):
        t0, c0, got = time.perf_counter(), time.process_time(), 0
        while got < patches:
            set_epoch(loader, epoch)
            epoch += 1
            for batch in loader:
                if got == 0 and p == 0:
                    start = time.perf_counter() - t0
                got += int(batch["image"].shape[0])
                if got >= patches:
                    break
        rates.append(got / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) / got)
    del loader
    later = slice(1, None) if passes > 1 else slice(None)
    return {"rate": max(rates[later]), "cpu": min(cpu[later]), "start": start, "per_epoch": per_epoch}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--shape", default="160,192,144")
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--patches", type=int, default=160)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--per-volume", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2, help="batch size (each batch is one hand-over from a worker)")
    ap.add_argument("--contexts", default="fork,forkserver,spawn,auto")
    ap.add_argument("--workdir", default="/tmp/radiobject-loader-workers")
    args = ap.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))
    store = prepare(Path(args.workdir), args.volumes, shape)  # type: ignore[arg-type]
    print(header())
    print(
        f"cohort: {args.volumes} x {shape} float32, patch {args.patch}^3, batch {args.batch}, no cache, "
        f"{args.patches} patches/pass, {args.passes} passes (pid {os.getpid()})"
    )
    configs: list[tuple[int, str, str | None]] = [(0, "threads", None), (1, "threads", None), (2, "threads", None)]
    for ctx in args.contexts.split(","):
        configs += [(1, "processes", ctx), (2, "processes", ctx)]
    base = None
    print(f"{'workers':28s} {'patches/s':>10s} {'vs 0':>6s} {'start s':>8s} {'main CPU ms/patch':>18s}")
    for workers, mode, ctx in configs:
        r = measure(store, workers, mode, ctx, args.patch, args.patches, args.passes, args.per_volume, args.batch)
        base = base or r["rate"]
        name = "0" if workers == 0 else f"{workers} {mode}" + (f" ({ctx})" if ctx else "")
        print(
            f"{name:28s} {r['rate']:10.1f} {r['rate'] / base:6.2f} {r['start']:8.2f} {r['cpu'] * 1e3:18.3f}",
            flush=True,
        )
    print(header())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
