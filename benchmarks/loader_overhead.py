"""Loader overhead per patch (issue 12): what the training loader adds on top of the patch reads.

    .venv/bin/python benchmarks/loader_overhead.py [--volumes 8] [--patch 64] [--epochs 6] [--profile]

Cohort: the one of ``benchmarks/loader_workers.py`` (``--volumes`` MRI-like float32 volumes of
``--shape``). The loader is ``create_training_dataloader`` (0 workers, batch 2, no cache,
``--per-volume`` patches per subject per epoch, no per-process volume buffer). In the same run, on
the same patches (those of the loader's own epochs):

* ``loader``: seconds per patch iterating the loader (sampler, dataset, read, collate, yield);
* ``reads``: seconds per patch inside ``VolumeReader.read_patch_into`` during that iteration
  (timed around each call), and ``raw``: a plain loop of ``read_patch_into`` over the same
  ``(subject, origin)`` list into one preallocated buffer;
* ``overhead = loader - reads`` per patch (the loader's own work: index lookups, origin draws,
  buffers, dict building, tensor conversion, collate), and ``loader - raw`` for reference;
  ``overhead, CPU``: the main thread's CPU time outside the reads per patch (less sensitive to a
  loaded machine than wall time; tensorstore decodes on its own threads);
* a ``perf_counter`` breakdown with the reads replaced by a no-op: the whole loader, the sampler,
  ``__getitems__`` + collate, ``build_batch``, and one origin draw (``PatchDataset.origin``).

Loader and raw passes alternate ``--rounds`` times; the best of each is reported. ``--profile``
prints the top functions (by own time) of a cProfile run of
the loader. Date, machine and load are printed: the machine may be shared with other work.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.codec_default import header
from benchmarks.loader_workers import prepare


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from radiobject import RadiObject
    from radiobject.ml.cache import NoCache
    from radiobject.ml.config import FLAT
    from radiobject.ml.distributed import set_epoch
    from radiobject.ml.loaders import create_training_dataloader

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--shape", default="160,192,144")
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--per-volume", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--workdir", default="/tmp/radiobject-loader-workers")
    args = ap.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))
    store = prepare(Path(args.workdir), args.volumes, shape)  # type: ignore[arg-type]
    patch = (args.patch,) * 3
    print(header())

    loader = create_training_dataloader(
        RadiObject(str(store)),
        modalities="img",
        patch_size=patch,
        batch_size=2,
        patches_per_volume=args.per_volume,
        seed=1,
        **({"prefetch_patches": 0} if "prefetch_patches" in FLAT else {}),  # reads only where they are timed
    )
    ds = loader.dataset
    ds.reader = reader = ds.reader.with_cache(NoCache())  # no per-process volume buffer: every patch is a store read

    timed = {"s": 0.0, "cpu": 0.0}
    plain = reader.read_patch_into

    def read_patch_into(*a, **k):  # the loader's reads, timed (wall and this thread's CPU)
        t, c = time.perf_counter(), time.thread_time()
        plain(*a, **k)
        timed["s"] += time.perf_counter() - t
        timed["cpu"] += time.thread_time() - c

    object.__setattr__(reader, "read_patch_into", read_patch_into)
    draws: list[tuple[int, np.ndarray]] = []
    for e in range(args.epochs):
        set_epoch(loader, e)
        for b in loader:
            draws += [(reader.index_of(s), o.numpy()) for s, o in zip(b["subject_id"], b["patch_origin"], strict=True)]
    n = len(draws)

    cpu = {"overhead": 1e9}

    def run_loader() -> tuple[float, float]:
        timed["s"], timed["cpu"] = 0.0, 0.0
        t0, c0 = time.perf_counter(), time.thread_time()
        for e in range(args.epochs):
            set_epoch(loader, e)
            for _ in loader:
                pass
        cpu["overhead"] = min(cpu["overhead"], (time.thread_time() - c0 - timed["cpu"]) / n)
        return (time.perf_counter() - t0) / n, timed["s"] / n

    buf = np.empty((1, *patch), np.float32)

    def run_raw() -> float:
        t0 = time.perf_counter()
        for s, o in draws:
            plain(s, o, patch, buf)
        return (time.perf_counter() - t0) / n

    best = {"loader": 1e9, "overhead": 1e9, "raw": 1e9, "reads": 1e9}
    for _ in range(args.rounds):
        lt, rt = run_loader()
        raw = run_raw()
        best["loader"], best["reads"] = min(best["loader"], lt), min(best["reads"], rt)
        best["overhead"] = min(best["overhead"], lt - rt)
        best["raw"] = min(best["raw"], raw)
    print(
        f"cohort {args.volumes} x {shape}, patch {args.patch}^3, batch 2, no cache, {n} patches per pass, "
        f"best of {args.rounds} rounds"
    )
    print(f"loader            {best['loader'] * 1e3:8.3f} ms/patch")
    print(f"reads in loader   {best['reads'] * 1e3:8.3f} ms/patch")
    print(f"raw read loop     {best['raw'] * 1e3:8.3f} ms/patch")
    print(f"overhead          {best['overhead'] * 1e3:8.3f} ms/patch  (loader - reads in loader, best round)")
    print(f"loader - raw      {(best['loader'] - best['raw']) * 1e3:8.3f} ms/patch")
    print(f"overhead, CPU     {cpu['overhead'] * 1e3:8.3f} ms/patch  (main thread CPU outside the reads, best round)")
    # perf_counter breakdown with the reads replaced by a no-op: what is left is the loader's own work
    object.__setattr__(reader, "read_patch_into", lambda *a, **k: None)
    keys = [(0, i) for i in range(2)]
    sampler = loader.batch_sampler

    def per_patch(fn, calls: int, patches_per_call: float) -> float:
        return min(timeit.repeat(fn, number=calls, repeat=5)) / calls / patches_per_call

    def sampler_pass() -> None:
        set_epoch(loader, 0)
        for _ in sampler:
            pass

    def origin_draws() -> None:
        for i in range(len(ds)):
            ds.origin(i, 0)

    parts = {
        "loader, reads no-op": min(run_loader()[0] for _ in range(5)),
        "  sampler + batch sampler": per_patch(sampler_pass, 2, len(ds)),
        "  __getitems__ + collate": per_patch(lambda: loader.collate_fn(ds.__getitems__(keys)), 300, 2),
        "    build_batch": per_patch(lambda: ds.build_batch(keys), 300, 2),
        "      origin draw (ds.origin)": per_patch(origin_draws, 1, len(ds)),
    }
    print("breakdown, reads replaced by a no-op (best of 5):")
    for name, sec in parts.items():
        print(f"{name:34s} {sec * 1e6:8.1f} us/patch")
    object.__setattr__(reader, "read_patch_into", read_patch_into)
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        run_loader()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    print(header())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
