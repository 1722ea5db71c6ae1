"""The own local Zarr read path (``radiobject.storage._zarr_plain``) against tensorstore, same run.

    .venv/bin/python benchmarks/zarr_reader.py [--volumes 6] [--patches 150] [--rounds 6] [--patch 96]

Writes ``--volumes`` MRI-like float32 volumes (``radiobject.bench.synthetic.mri_like``, default codec
blosc-lz4hc:5 and chunking) and reads them through both engines with the decoded-chunk cache off
(every read decodes and checks every crc32c it touches): (a) random unaligned ``--patch``^3
patches, (b) 32^3 patches, (c) whole volumes, each with one decode thread and with one per core,
alternating the engine order every round. Prints wall and CPU milliseconds per read (CPU: all
threads of the process) and the median over rounds of tensorstore / own wall time, with date,
machine and load (the machine may be shared: ratios within one run only). Every read of the own
path is compared with tensorstore's once (bit for bit) before timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.codec_default import header


def _time(fn, n: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n * 1e3, (time.process_time() - c0) / n * 1e3


def main(argv: list[str] | None = None) -> int:
    from radiobject import Volume
    from radiobject.bench.synthetic import mri_like
    from radiobject.storage import zarr_backend
    from radiobject.storage._zarr_read import cores
    from radiobject.storage.zarr_backend import ZarrBackend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=6)
    ap.add_argument("--patches", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--patch", type=int, default=96)
    args = ap.parse_args(argv)
    print(header())
    zarr_backend.CHUNK_CACHE_BYTES = 0  # every read decodes (both engines: the pool and the own LRU)
    with tempfile.TemporaryDirectory() as tmp:
        uris = [Volume.from_numpy(f"{tmp}/v{i}", mri_like(seed=i)).uri for i in range(args.volumes)]
        engines = {}
        for plain in (True, False):
            zarr_backend.PLAIN_READS = plain
            engines["own" if plain else "tensorstore"] = [ZarrBackend().open_array(u) for u in uris]
        zarr_backend.PLAIN_READS = True
        own, ts = engines["own"], engines["tensorstore"]
        assert type(own[0]).__name__ == "PlainZarrArray" and type(ts[0]).__name__ == "ZarrArray"
        shape = own[0].shape
        print(f"{args.volumes} volumes {shape} {own[0].dtype}, chunks {own[0].spec.chunks}; {cores()} cores")
        rng = np.random.default_rng(0)
        sizes = {f"{args.patch}^3": args.patch, "32^3": 32}
        kinds = [*sizes, "whole"]
        ratios: dict[tuple[str, int], list[float]] = {(k, t): [] for k in kinds for t in (1, cores())}
        whole = tuple(slice(0, s) for s in shape)
        for rnd in range(args.rounds):
            regions = {
                k: [
                    tuple(slice(a, a + p) for a in [int(rng.integers(0, s - p + 1)) for s in shape[:3]])
                    for _ in range(args.patches)
                ]
                for k, p in sizes.items()
            }
            regions["whole"] = [whole] * (2 * args.volumes)
            if rnd == 0:  # bit for bit, once
                for k in kinds:
                    for i, r in enumerate(regions[k][:20]):
                        v = i % args.volumes
                        np.testing.assert_array_equal(own[v].read(r), ts[v].read(r))
            line = []
            for threads in (1, cores()):
                zarr_backend.DECODE_THREADS = threads
                for k in kinds:
                    res = {}
                    for name in ("own", "tensorstore") if rnd % 2 == 0 else ("tensorstore", "own"):
                        arrs, regs = engines[name], regions[k]
                        res[name] = _time(lambda i, a=arrs, r=regs: a[i % len(a)].read(r[i]), len(regs))
                    ratios[k, threads].append(res["tensorstore"][0] / res["own"][0])
                    line.append(
                        f"{k} t{threads}: own {res['own'][0]:.2f} ms (cpu {res['own'][1]:.2f}) / "
                        f"ts {res['tensorstore'][0]:.2f} ms (cpu {res['tensorstore'][1]:.2f})"
                    )
            print(f"round {rnd}: " + "; ".join(line), flush=True)
        zarr_backend.DECODE_THREADS = None
    print(
        "median speed-up (wall, tensorstore / own): "
        + ", ".join(f"{k} {t} thread(s) {statistics.median(v):.2f}x" for (k, t), v in ratios.items())
    )
    print(header())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
