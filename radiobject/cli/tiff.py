"""``radiobject convert-tiff``: TIFF / OME-TIFF regions -> OME-Zarr pyramids (NGFF 0.5 or 0.4)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from radiobject.cli._args import (
    add_storage_arguments,
    human_bytes,
    int_in,
    interrupted,
    positive_int,
    stop_signals,
    storage_from_args,
)
from radiobject.convert import (
    COMPRESSIONS,
    ConversionPlan,
    ConvertOptions,
    RegionResult,
    convert_regions,
)

__all__ = ["register", "run_convert"]


def register(subparsers: Any) -> None:
    """Adds the ``convert-tiff`` command."""
    p = subparsers.add_parser(
        "convert-tiff",
        help="convert TIFF / OME-TIFF / SVS regions to OME-Zarr multiscale images",
        description="Convert TIFF / OME-TIFF / SVS files (or folders of them) to OME-Zarr pyramids, "
        "out of core. Files whose names share a sample key (the name up to a region token: "
        "sampleA_R000_DAPI.tif -> sampleA_R000) are stacked as the channels of one image; every other "
        "file is its own image. Writes OUT/<sample key>.ome.zarr; OUT is a folder or s3://bucket/prefix. "
        "An image appears under its final name only once complete.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF files or folders")
    p.add_argument("-o", "--output", required=True, help="output folder or s3://bucket/prefix")
    p.add_argument("--workers", type=positive_int, default=None, help="parallel workers (default: CPU count)")
    p.add_argument("--executor", choices=("thread", "process"), default="thread", help="worker kind (default: thread)")
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        help="y/x chunk edge in pixels (default: auto, about 32 MB per chunk over all channels)",
    )
    p.add_argument("--compression", choices=COMPRESSIONS, default="blosc", help="codec (default: blosc)")
    p.add_argument(
        "--compression-level",
        type=int_in(1, 9, "compression level"),
        default=5,
        help="1 (fast) .. 9 (small); default 5",
    )
    p.add_argument(
        "--pyramid-levels",
        type=positive_int,
        default=None,
        help="levels including full resolution (default: halve until <= 512 px)",
    )
    p.add_argument(
        "--regions",
        nargs="+",
        default=None,
        metavar="R",
        help="only these regions: a token (R000: every sample's R000) or a full key (sampleA_R000)",
    )
    p.add_argument(
        "--ngff-version",
        choices=("0.5", "0.4"),
        default="0.5",
        help="0.5 (Zarr v3, sharded; napari) or 0.4 (Zarr v2; QuPath, Fiji). Default 0.5",
    )
    p.add_argument("--labels", action="store_true", help="inputs are label images (mode downsampling)")
    p.add_argument("--downsample-z", action="store_true", help="also halve z at each level (volumes)")
    p.add_argument(
        "--series",
        type=int_in(0, None, "series"),
        default=None,
        metavar="N",
        help="the TIFF series to convert of files that hold several images (default: a file's one "
        "image series; a file of several is an error listing them)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep existing complete outputs (reported as present): resumes an interrupted run",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_storage_arguments(p)
    p.set_defaults(func=run_convert)


def _print_settings(options: ConvertOptions, plans: list[ConversionPlan | RegionResult], out: Any) -> None:
    ok = [p for p in plans if isinstance(p, ConversionPlan)]
    chunks = sorted({p.chunk for p in ok})
    auto = options.chunk_size is None
    chunk_txt = ", ".join(f"{c}x{c}" for c in chunks) or "-"
    print("Conversion settings:", file=out)
    print(
        f"  Regions:        {len(plans)} "
        f"({', '.join(p.region.name if isinstance(p, ConversionPlan) else p.name for p in plans)})",
        file=out,
    )
    print(f"  Chunk size:     {chunk_txt} pixels ({'auto-calculated' if auto else 'user'})", file=out)
    comp = (
        options.compression
        if options.compression == "none"
        else f"{options.compression} (level {options.compression_level})"
    )
    print(f"  Compression:    {comp}", file=out)
    print(
        f"  Workers:        {options.n_workers} {options.executor}s"
        f"{' (auto-detected)' if options.workers is None else ''}",
        file=out,
    )
    levels = (
        f"auto (down to <= {options.min_size} px)" if options.pyramid_levels is None else str(options.pyramid_levels)
    )
    print(
        f"  Pyramid levels: {levels}; downsampling: {'mode (labels)' if options.labels else 'mean'}"
        f"{', z too' if options.downsample_z else ''}",
        file=out,
    )
    fmt = "Zarr v3, sharded" if options.ngff_version == "0.5" else "Zarr v2"
    print(f"  NGFF version:   {options.ngff_version} ({fmt})", file=out)
    for p in ok:
        print(
            f"  {p.region.name}: {len(p.region.inputs)} file(s), "
            f"shape {dict(zip(p.source.axes, p.source.shape, strict=True))} "
            f"{p.source.dtype}, {len(p.levels)} levels, {human_bytes(p.source.nbytes)} -> {p.output}",
            file=out,
        )
    out.flush()


def _print_summary(results: list[RegionResult], out: Any) -> None:
    print("Summary:", file=out)
    print(
        f"  {'region':<24} {'status':<7} {'time s':>8} {'input':>10} {'output':>10} {'ratio':>6} {'MB/s':>8}", file=out
    )
    for r in results:
        status = "present" if r.present else "ok" if r.ok else "FAILED"
        print(
            f"  {r.name:<24} {status:<7} {r.seconds:>8.2f} "
            f"{human_bytes(r.bytes_in):>10} {human_bytes(r.bytes_out):>10} "
            f"{r.ratio:>6.2f} {r.mb_per_s:>8.1f}",
            file=out,
        )
        if not r.ok:
            print(f"    error: {r.error}", file=out)
    done = [r for r in results if r.ok]
    total_s = sum(r.seconds for r in results)
    total_in = sum(r.bytes_in for r in done)
    print(
        f"  {len(done)}/{len(results)} regions converted in {total_s:.2f} s; "
        f"{human_bytes(total_in)} -> {human_bytes(sum(r.bytes_out for r in done))}",
        file=out,
    )


def run_convert(args: argparse.Namespace) -> int:
    """Runs ``convert-tiff``; 0 when every region converted, 1 when any failed, 2 on bad input,
    130 after Ctrl-C and 143 after SIGTERM (the image being written is removed; finished images
    stay)."""
    try:
        options = ConvertOptions(
            workers=args.workers,
            executor=args.executor,
            chunk_size=args.chunk_size,
            compression=args.compression,
            compression_level=args.compression_level,
            pyramid_levels=args.pyramid_levels,
            ngff_version=args.ngff_version,
            labels=args.labels,
            downsample_z=args.downsample_z,
            series=args.series,
            overwrite=args.overwrite,
            skip_existing=args.skip_existing,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    missing = [p for p in args.inputs if not os.path.exists(p)]
    if missing:
        print(f"error: inputs not found: {missing}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from radiobject.errors import RadiObjectError

    bar = tqdm(total=0, unit="block", desc="convert-tiff", disable=args.no_progress, file=sys.stderr)
    try:
        with stop_signals():
            results = convert_regions(
                args.inputs,
                args.output,
                options,
                regions=args.regions,
                progress=bar,
                on_plan=lambda plans: _print_settings(options, plans, sys.stdout),
                storage=storage_from_args(args),
            )
    except (ValueError, RadiObjectError) as exc:  # e.g. --regions naming a region that is not there
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return interrupted(
            exc,
            "the image being written was removed; images already converted are complete; "
            "re-run with --skip-existing to convert the rest",
        )
    finally:
        bar.close()
    _print_summary(results, sys.stdout)
    if not results:
        print(f"error: no TIFF files found in the inputs ({', '.join(map(str, args.inputs))})", file=sys.stderr)
        return 2
    return 0 if all(r.ok for r in results) else 1
