"""One read as per-core sub-reads (``radiobject.storage._zarr_read.split_region``) against one read.

    .venv/bin/python benchmarks/split_reads.py [--volumes 8] [--patches 150] [--rounds 6]

tensorstore decodes the inner chunks one read takes from one shard in one task; a volume is one
shard, so a read decodes on one core unless it is issued as several sub-reads. This writes
``--volumes`` MRI-like float32 volumes (``radiobject.bench.synthetic.mri_like``, default codec and
chunking) and times, with tensorstore's chunk cache off, (a) whole-volume reads (a cache filling
its first epoch, ``to_numpy``, export) and (b) random unaligned 96^3 patch reads, each with one
piece (``DECODE_THREADS = 1``) and with one piece per core, alternating the order every round.
Prints wall and CPU milliseconds per read and the median over rounds of the wall-time ratio,
with date, machine and load (the machine may be shared: ratios within one run only).
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

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--patches", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    print(header())
    zarr_backend.CHUNK_CACHE_BYTES = 0  # every read decodes
    with tempfile.TemporaryDirectory() as tmp:
        vols = [Volume.from_numpy(f"{tmp}/v{i}", mri_like(seed=i)) for i in range(args.volumes)]
        vols = [Volume(v.uri) for v in vols]
        shape = vols[0].shape
        print(f"{args.volumes} volumes {shape} float32, chunks {vols[0].chunks}; {cores()} cores; tensorstore pool 0")
        rng = np.random.default_rng(0)
        ratios: dict[str, list[float]] = {"whole": [], "patch": []}
        for rnd in range(args.rounds):
            origins = [[int(rng.integers(0, s - 96 + 1)) for s in shape[:3]] for _ in range(args.patches)]
            res: dict[tuple[str, int], tuple[float, float]] = {}
            order = (1, cores()) if rnd % 2 == 0 else (cores(), 1)
            for parts in order:
                zarr_backend.DECODE_THREADS = parts
                res["whole", parts] = _time(lambda i: vols[i % len(vols)].to_numpy(), 2 * len(vols))
                regions = [tuple(slice(a, a + 96) for a in o) for o in origins]
                res["patch", parts] = _time(lambda i, r=regions: vols[i % len(vols)][r[i]], len(regions))
            for kind in ratios:
                ratios[kind].append(res[kind, 1][0] / res[kind, cores()][0])
            print(
                f"round {rnd}: "
                + "  ".join(
                    f"{kind} 1 piece {res[kind, 1][0]:.2f} ms (cpu {res[kind, 1][1]:.2f}) / "
                    f"{cores()} pieces {res[kind, cores()][0]:.2f} ms (cpu {res[kind, cores()][1]:.2f})"
                    for kind in ratios
                ),
                flush=True,
            )
        zarr_backend.DECODE_THREADS = None
    print(
        "median speed-up (wall, one piece / per-core pieces): "
        + ", ".join(f"{k} {statistics.median(v):.2f}x" for k, v in ratios.items())
    )
    print(header())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
