"""TIFF -> OME-Zarr conversion benchmark: throughput, output size per codec, peak memory.

Everything is measured in one run, each case in its own subprocess (so peak RSS is that case's
alone), cases interleaved and repeated (the median is reported):

* baseline: ``tifffile.imread`` of the whole image + one ``zarr`` write of it (Zarr v3, the same
  chunks, shards and codec as ours, level 0 only, no pyramid);
* ours: ``radiobject.convert.convert_tiff`` with 1 and 2 workers, level 0 only (same work as the
  baseline) and with the full pyramid;
* output size per codec / level (blosc, zstd, lz4 at levels 1, 5, 9 and none), level 0 only;
* ``--big``: the out-of-core case, a 20,000 x 20,000 x 4 uint16 tiled TIFF (3.2 GB) converted with
  the full pyramid while peak RSS is recorded.

MB/s = uncompressed level-0 bytes (1e6) / wall seconds of the conversion.

Usage: .venv/bin/python benchmarks/tiff_convert.py [--size 8192] [--repeats 3] [--big] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs one case in this (fresh) process; returns seconds, sizes and peak RSS."""
    import resource

    sys.path.insert(0, str(ROOT))
    out = Path(spec["out"])
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    if spec["case"] == "baseline":
        import tifffile
        import zarr

        from radiobject.convert.options import v3_compressors

        data = tifffile.imread(spec["input"])
        arr = zarr.create_array(
            str(out),
            shape=data.shape,
            dtype=data.dtype,
            chunks=tuple(spec["chunks"]),
            shards=tuple(spec["shards"]),
            compressors=v3_compressors(spec["compression"], spec["level"]),
        )
        arr[...] = data
        nbytes = data.nbytes
        ok = True
    else:
        from radiobject.convert import ConvertOptions, convert_tiff

        opts = ConvertOptions(
            workers=spec["workers"],
            compression=spec["compression"],
            compression_level=spec["level"],
            pyramid_levels=spec.get("levels"),
            executor=spec.get("executor", "thread"),
        )
        res = convert_tiff(spec["input"], out, opts)
        ok, nbytes = res.ok, res.bytes_in
        if not ok:
            raise SystemExit(f"conversion failed: {res.error}")
    seconds = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "ok": ok,
        "seconds": seconds,
        "bytes_in": nbytes,
        "bytes_out": size,
        "peak_rss": ru.ru_maxrss * 1024,  # Linux reports KiB
        "cpu_seconds": ru.ru_utime + ru.ru_stime,
    }


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs one case in a subprocess and parses its JSON line."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], check=False, capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        raise RuntimeError(f"case {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_mb(n: float) -> str:
    return f"{n / 1e6:8.1f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=8192, help="edge of the square test image (default 8192)")
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big", action="store_true", help="also run the 20,000 x 20,000 x 4 out-of-core case")
    ap.add_argument("--no-codecs", action="store_true", help="skip the codec / level size table")
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0

    sys.path.insert(0, str(ROOT))
    from radiobject.convert.options import auto_chunk_size, block_size
    from radiobject.convert.synthetic import write_synthetic_tiff

    work = Path(args.workdir or tempfile.mkdtemp(prefix="tiffbench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"cpus": os.cpu_count(), "size": args.size, "channels": args.channels}
    src = work / f"bench_{args.channels}x{args.size}.ome.tif"
    t0 = time.perf_counter()
    nbytes = write_synthetic_tiff(src, args.channels, args.size, args.size)
    print(
        f"input: {src.name}: {args.channels} x {args.size} x {args.size} uint16, tiled 512, uncompressed, "
        f"{nbytes / 1e6:.0f} MB (written in {time.perf_counter() - t0:.1f} s); {os.cpu_count()} CPUs"
    )
    chunk = auto_chunk_size(args.size, args.size, args.channels, 2)
    shard = block_size(chunk, 1, 2, 64 * 2**20)
    base = {"input": str(src), "compression": "blosc", "level": 5}
    cases = {
        "baseline (tifffile.imread + zarr write, level 0)": dict(
            base, case="baseline", chunks=[1, chunk, chunk], shards=[1, shard, shard]
        ),
        "ours, 1 worker, level 0": dict(base, case="ours", workers=1, levels=1),
        "ours, 2 workers, level 0": dict(base, case="ours", workers=2, levels=1),
        "ours, 1 worker, full pyramid": dict(base, case="ours", workers=1),
        "ours, 2 workers, full pyramid": dict(base, case="ours", workers=2),
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in cases}
    for _rep in range(args.repeats):  # interleaved, so background load hits every case alike
        for name, spec in cases.items():
            runs[name].append(run_case(dict(spec, out=str(work / "out.zarr"))))
    print(f"\nthroughput (blosc-lz4 level 5, chunk {chunk}, shard {shard}; median of {args.repeats}):")
    med: dict[str, dict[str, float]] = {}
    for name, rs in runs.items():
        secs = statistics.median(r["seconds"] for r in rs)
        cpu = statistics.median(r["cpu_seconds"] for r in rs)
        med[name] = {
            "seconds": secs,
            "mb_s": nbytes / 1e6 / secs,
            "peak_rss": max(r["peak_rss"] for r in rs),
            "bytes_out": rs[0]["bytes_out"],
            "all_seconds": [r["seconds"] for r in rs],
            "cpu_seconds": cpu,
        }
        print(
            f"  {name:<48} {secs:6.2f} s {med[name]['mb_s']:7.1f} MB/s  cpu {cpu:6.2f} s  "
            f"peak RSS {_fmt_mb(med[name]['peak_rss'])}  out {_fmt_mb(med[name]['bytes_out'])}"
        )
    b = med["baseline (tifffile.imread + zarr write, level 0)"]["mb_s"]
    bname = "baseline (tifffile.imread + zarr write, level 0)"
    print("\nratios against the baseline (MB/s ours / MB/s baseline; peak RSS ours / baseline):")
    for name in list(cases)[1:]:
        print(
            f"  {name:<48} speed x{med[name]['mb_s'] / b:.2f}   "
            f"memory x{med[name]['peak_rss'] / med[bname]['peak_rss']:.2f}"
        )
    results["throughput"] = med

    if not args.no_codecs:
        print("\noutput size per codec / level (level 0 only, 2 workers, one run each):")
        table = []
        for comp, level in [("none", 1)] + [(c, lv) for c in ("blosc", "zstd", "lz4") for lv in (1, 5, 9)]:
            r = run_case(
                dict(base, case="ours", workers=2, levels=1, compression=comp, level=level, out=str(work / "out.zarr"))
            )
            row = {
                "compression": comp,
                "level": level,
                "bytes_out": r["bytes_out"],
                "ratio": nbytes / r["bytes_out"],
                "mb_s": nbytes / 1e6 / r["seconds"],
            }
            table.append(row)
            label = comp if comp == "none" else f"{comp}-{level}"
            print(f"  {label:<9} {_fmt_mb(r['bytes_out'])}  ratio {row['ratio']:5.2f}  {row['mb_s']:7.1f} MB/s")
        results["codecs"] = table

    if args.big:
        big = work / "big_4x20000.ome.tif"
        t0 = time.perf_counter()
        big_bytes = write_synthetic_tiff(big, 4, 20000, 20000)
        print(
            f"\nout of core: 4 x 20000 x 20000 uint16 tiled TIFF, {big_bytes / 1e9:.2f} GB "
            f"(written in {time.perf_counter() - t0:.1f} s)"
        )
        r = run_case(dict(base, input=str(big), case="ours", workers=2, out=str(work / "big.zarr")))
        print(
            f"  converted with the full pyramid, 2 workers: {r['seconds']:.1f} s, "
            f"{big_bytes / 1e6 / r['seconds']:.1f} MB/s, output {r['bytes_out'] / 1e9:.2f} GB, "
            f"peak RSS {r['peak_rss'] / 1e6:.0f} MB = {r['peak_rss'] / big_bytes:.1%} of the image"
        )
        results["big"] = dict(r, image_bytes=big_bytes)
        big.unlink()
    src.unlink()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
