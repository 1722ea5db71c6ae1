"""``radiobject bench storage`` and ``radiobject recommend``: measured storage settings."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from radiobject.cli._args import positive_int

__all__ = ["register", "run_bench_storage", "run_recommend", "storage_bench"]


def _scale(value: str) -> float:
    x = float(value)
    if not 0.01 <= x <= 4:
        raise argparse.ArgumentTypeError(f"scale must be in 0.01..4, got {x}")
    return x


def register(subparsers: Any) -> None:
    """Adds ``bench storage`` and ``recommend``."""
    bench = subparsers.add_parser("bench", help="benchmarks", description="Benchmarks of the storage layer.")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    p = bsub.add_parser(
        "storage",
        help="sweep backend x codec x shuffle x level x chunk shape x sharding on a volume",
        description="Measure write time, full read, random unaligned patches, slices in every plane, "
        "compression ratio and file counts over storage settings, on your volume(s) or built-in synthetic "
        "MRI-like (240x240x155 float32) and CT-like (512x512x300 int16) volumes. Writes results.csv, "
        "lossy.csv, PNG plots and summary.md into --out.",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="NIfTI / DICOM folder / TIFF / OME-Zarr (NGFF 0.4 or 0.5) / radiobject volume URI",
    )
    p.add_argument(
        "--input",
        action="append",
        default=[],
        dest="input_opt",
        metavar="INPUT",
        help="an input (repeatable; same as the positional INPUT)",
    )
    p.add_argument(
        "--level",
        type=int,
        default=None,
        metavar="N",
        help="pyramid level of OME-Zarr inputs (default 0, or the level array the path names)",
    )
    p.add_argument("--out", required=True, help="output folder")
    grp = p.add_mutually_exclusive_group()
    grp.add_argument("--quick", action="store_true", help="one factor at a time around the default (default)")
    grp.add_argument("--full", action="store_true", help="every level 1-9, every shuffle, codec grid on TileDB")
    grp.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests
    p.add_argument("--scale", type=_scale, default=1.0, help="size factor of the synthetic volumes (default 1)")
    p.add_argument("--synthetic", default="mri,ct", help="synthetic volumes without INPUT (default mri,ct)")
    p.add_argument("--patch", type=positive_int, default=64, help="random patch edge (default 64)")
    p.add_argument("--no-lossy", action="store_true", help="skip the lossy codec measurements")
    p.add_argument("--keep", action="store_true", help="keep the written stores under OUT/stores")
    p.set_defaults(func=run_bench_storage)

    r = subparsers.add_parser(
        "recommend",
        help="chunk / shard / codec settings for an access pattern, from a quick measured sweep",
        description="Measure candidate settings on your volume (or a synthetic MRI-like one) for an access "
        "pattern and print the best chunk / shard / codec settings with the measurements behind them.",
    )
    r.add_argument(
        "input", nargs="?", default=None, metavar="INPUT", help="NIfTI / DICOM / TIFF / OME-Zarr / volume URI"
    )
    r.add_argument("--access", required=True, help="patch:N (random unaligned N^3 patches), slice or full")
    r.add_argument("--storage", choices=("local", "s3"), default="local", help="where the store will live")
    r.add_argument("--scale", type=_scale, default=1.0, help="size factor of the synthetic volume (default 1)")
    r.add_argument("--s3-latency-ms", type=float, default=20.0, help="assumed S3 request latency (default 20)")
    r.add_argument("--s3-concurrency", type=positive_int, default=16, help="assumed parallel S3 requests (default 16)")
    r.add_argument(
        "--size-weight",
        type=float,
        default=1.0,
        help="weight of stored size against access time in the score (default 1)",
    )
    r.set_defaults(func=run_recommend)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def storage_bench(
    inputs: list[str] | None,
    out: str,
    mode: str = "quick",
    scale: float = 1.0,
    synthetic: tuple[str, ...] = ("mri", "ct"),
    patch: int = 64,
    lossy: bool = True,
    keep: bool = False,
    progress: Any = _log,
    level: int | None = None,
) -> dict[str, str]:
    """Runs the sweep (and lossy codecs) and writes the report; returns the written paths.
    ``level``: the pyramid level read from OME-Zarr inputs (default 0)."""
    import os

    from radiobject.bench.inputs import bench_volumes
    from radiobject.bench.lossy import run_lossy
    from radiobject.bench.report import machine_info, write_report
    from radiobject.bench.sweep import SweepOptions, lossless_failures, run_sweep

    t0 = time.perf_counter()
    meta = machine_info()
    volumes = bench_volumes(inputs, scale, synthetic, level)
    tiny = mode == "tiny"
    opts = SweepOptions(
        patch=patch,
        n_patches=3 if tiny else 8,
        n_slices=2 if tiny else 3,
        reps=1 if tiny else 2,
        rounds=2 if tiny else 3,
        extra_patches=() if tiny else (96, 128),
    )
    workdir = os.path.join(out, "stores") if keep else None
    rows = run_sweep(volumes, mode=mode, opts=opts, workdir=workdir, progress=progress, keep=keep)
    lrows = run_lossy(volumes, quick=mode != "full", progress=progress) if lossy else None
    meta["load_avg_1m_end"] = f"{os.getloadavg()[0]:.1f}"
    meta["wall_s"] = f"{time.perf_counter() - t0:.0f}"
    paths = write_report(rows, lrows, out, meta)
    bad = lossless_failures(rows)
    if bad:
        progress(f"NOT BIT-EXACT or failed: {len(bad)}: " + "; ".join(bad[:10]))
    return paths


def run_bench_storage(args: argparse.Namespace) -> int:
    """``bench storage``: 0 when every lossless configuration round-tripped bit-exactly."""
    from radiobject.errors import RadiObjectError

    mode = "full" if args.full else "tiny" if args.tiny else "quick"
    try:
        inputs = list(args.inputs) + list(args.input_opt)
        paths = storage_bench(
            inputs or None,
            args.out,
            mode,
            args.scale,
            tuple(args.synthetic.split(",")),
            args.patch,
            not args.no_lossy,
            args.keep,
            level=args.level,
        )
    except RadiObjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import pandas as pd

    df = pd.read_csv(paths["csv"])
    for path in paths.values():
        print(path)
    ok = df["exact"].fillna(False).astype(bool).all()
    print(f"{len(df)} configurations, {'all' if ok else 'NOT all'} lossless round-trips bit-exact")
    return 0 if ok else 1


def run_recommend(args: argparse.Namespace) -> int:
    """``recommend``: prints the settings and the measurements behind them."""
    from radiobject.bench.recommend import Access, default_volume, explain, recommend
    from radiobject.errors import RadiObjectError

    try:
        access = Access.parse(args.access)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.input:
            from radiobject.bench.inputs import load_input

            volume = load_input(args.input)[1]
        else:
            volume = default_volume(args.scale)
    except RadiObjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    s1, s2, choice = recommend(
        volume, access, args.storage, args.s3_latency_ms, args.s3_concurrency, size_weight=args.size_weight
    )
    print(explain(s1, s2, choice, access))
    return 0
