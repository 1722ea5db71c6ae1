"""Store-foundation I/O benchmark (issue 2, item 6): radiobject on Zarr and TileDB side by side with
the ceilings (np.load, mmap .npy), nibabel .nii / .nii.gz and PyPI radiobject 0.1.1, in one run.

Volumes: synthetic MRI-like 240x240x155 float32 and CT-like 512x512x300 int16 (``--scale`` shrinks
them). Operations: random *unaligned* 64^3 patch, full volume, one axial / sagittal / coronal slice,
open + first voxel, stored size, ingest time. Every region is read twice and the faster kept; the
median over regions is reported (full volume: best of 3). radiobject is measured through the public
``Volume`` API three ways: tensorstore's chunk cache off (every read decodes everything, shard
index included); as shipped with the 64 MiB cache at first touch (a fresh context whose shard index
is loaded, data not yet read: a loader reaching a new volume); and as shipped with the cache warm
(the same regions read again).

    .venv/bin/python benchmarks/io.py [--scale 1] [--out DIR] [--ro011 /tmp/ro011-venv/bin/python]

Prints a table per volume with ratios to the ceilings and one PASS / MISS line per target; writes
io_results.csv / .json and io_bench.png into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._ro011 import run_ro011
from radiobject import Volume, WriteOptions
from radiobject.bench.engines import cold_chunk_cache, disk_usage
from radiobject.bench.synthetic import ct_like, mri_like

OPS = ("patch_ms", "full_ms", "axial_ms", "sagittal_ms", "coronal_ms", "open_ms")
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def best_ms(fn: Callable[[], Any], n: int) -> float:
    """Best of ``n`` timings in ms."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return min(times)


def probes(
    shape: tuple[int, ...], n_patches: int, seed: int = 0
) -> tuple[list[tuple[slice, ...]], dict[str, list[int]]]:
    """Random unaligned 64^3 patches (starts off multiples of 8) and random slice indices."""
    rng = np.random.default_rng(seed)
    p = min(64, *shape)
    patches = []
    for _ in range(n_patches):
        starts = []
        for n in shape:
            s = int(rng.integers(0, n - p + 1))
            starts.append(s + 1 if s % 8 == 0 and s < n - p else s)
        patches.append(tuple(slice(s, s + p) for s in starts))
    slices = {
        k: [int(i) for i in rng.integers(0, shape[a], size=3)] for a, k in enumerate(("sagittal", "coronal", "axial"))
    }
    return patches, slices


def _region_ms(read: Callable[[tuple[slice, ...]], Any], patches: list[tuple[slice, ...]]) -> float:
    return float(np.median([best_ms(lambda r=r: read(r), 2) for r in patches]))


def _plane(shape: tuple[int, ...], plane: str, i: int) -> tuple[Any, ...]:
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    return tuple(i if a == axis else slice(None) for a in range(3))


def bench_numpy_files(name: str, data: np.ndarray, work: str, patches: list, slices: dict) -> dict[str, dict[str, Any]]:
    """np.load / mmap .npy (ceilings) and nibabel .nii / .nii.gz."""
    import nibabel as nib

    res: dict[str, dict[str, Any]] = {}
    npy = os.path.join(work, f"{name}.npy")
    t = time.perf_counter()
    np.save(npy, data)
    ingest = time.perf_counter() - t
    mm = np.load(npy, mmap_mode="r")
    r = {"ingest_s": ingest, "bytes": os.path.getsize(npy), "n_files": 1}
    r["full_ms"] = best_ms(lambda: np.load(npy), 3)
    r["patch_ms"] = _region_ms(lambda reg: np.array(mm[reg]), patches)
    for plane, idx in slices.items():
        r[f"{plane}_ms"] = float(
            np.median([best_ms(lambda i=i, pl=plane: np.array(mm[_plane(data.shape, pl, i)]), 2) for i in idx])
        )
    r["open_ms"] = best_ms(lambda: np.load(npy, mmap_mode="r")[0, 0, 0], 5)
    r["exact"] = True
    res["np.load / mmap .npy (ceiling)"] = r
    for ext, n_patch in ((".nii", len(patches)), (".nii.gz", 3)):
        path = os.path.join(work, f"{name}{ext}")
        t = time.perf_counter()
        nib.save(nib.Nifti1Image(data, AFFINE), path)
        r = {"ingest_s": time.perf_counter() - t, "bytes": os.path.getsize(path), "n_files": 1}
        # mmap=False: a real read (the default memory map would defer the I/O past the timer)
        r["full_ms"] = best_ms(lambda p=path: np.asarray(nib.load(p, mmap=False).dataobj), 2 if ext == ".nii.gz" else 3)
        img = nib.load(path)
        r["patch_ms"] = _region_ms(lambda reg, im=img: np.asarray(im.dataobj[reg]), patches[:n_patch])
        for plane, idx in slices.items():
            r[f"{plane}_ms"] = float(
                np.median(
                    [
                        best_ms(
                            lambda i=i, im=img, pl=plane: np.asarray(im.dataobj[_plane(data.shape, pl, i)]),
                            1 if ext == ".nii.gz" else 2,
                        )
                        for i in idx[:2]
                    ]
                )
            )
        r["open_ms"] = best_ms(lambda p=path: nib.load(p).dataobj[0, 0, 0], 3)
        r["exact"] = bool(np.array_equal(np.asarray(nib.load(path).dataobj), data))
        res[f"nibabel {ext}"] = r
    return res


def _fresh_volume(uri: str) -> Volume:
    """A volume opened in a new tensorstore context (empty chunk cache), its shard index loaded by
    reading voxel (0, 0, 0): the state of a loader reaching a volume whose data it has not read."""
    from radiobject.storage import zarr_backend

    zarr_backend._context.cache_clear()
    vol = Volume(uri)
    vol[0, 0, 0]
    return vol


def _best_fresh_ms(uri: str, fn: Callable[[Volume], Any], n: int) -> float:
    """Best of ``n`` timings of ``fn(vol)``, each on a freshly opened volume (setup not timed)."""
    times = []
    for _ in range(n):
        vol = _fresh_volume(uri)
        t = time.perf_counter()
        fn(vol)
        times.append((time.perf_counter() - t) * 1e3)
    return min(times)


def bench_radiobject_first_touch(name: str, data: np.ndarray, work: str, patches: list, slices: dict) -> dict[str, Any]:
    """Zarr as shipped (64 MiB chunk cache) but every timed read touches data not yet cached."""
    uri = os.path.join(work, f"{name}-zarr")
    r: dict[str, Any] = {"ingest_s": float("nan"), "exact": True}
    r["bytes"], r["n_files"] = disk_usage(uri)
    r["open_ms"] = best_ms(lambda: Volume(uri)[0, 0, 0], 5)
    r["full_ms"] = _best_fresh_ms(uri, lambda v: v.to_numpy(), 3)
    r["patch_ms"] = float(np.median([_best_fresh_ms(uri, lambda v, reg=reg: v[reg], 2) for reg in patches]))
    for plane, idx in slices.items():
        r[f"{plane}_ms"] = float(
            np.median([_best_fresh_ms(uri, lambda v, i=i, pl=plane: getattr(v, pl)(i), 2) for i in idx])
        )
    return r


def bench_radiobject(
    name: str, data: np.ndarray, work: str, patches: list, slices: dict, backend: str, cached: bool
) -> dict[str, Any]:
    """One backend through ``radiobject.Volume``: ingest, open + first voxel, full, patch, planes."""
    uri = os.path.join(work, f"{name}-{backend}")
    shutil.rmtree(uri, ignore_errors=True)
    t = time.perf_counter()
    Volume.from_numpy(uri, data, AFFINE, options=WriteOptions(backend=backend))
    r: dict[str, Any] = {"ingest_s": time.perf_counter() - t}
    r["bytes"], r["n_files"] = disk_usage(uri)
    r["open_ms"] = best_ms(lambda: Volume(uri)[0, 0, 0], 5)
    vol = Volume(uri)
    r["exact"] = bool(np.array_equal(vol.to_numpy(), data))
    r["full_ms"] = best_ms(vol.to_numpy, 3)
    buf = np.empty_like(data)
    r["full_into_buffer_ms"] = best_ms(lambda: vol.read((), out=buf), 3)
    r["patch_ms"] = _region_ms(lambda reg: vol[reg], patches)
    for plane, idx in slices.items():
        fn = getattr(vol, plane)
        r[f"{plane}_ms"] = float(np.median([best_ms(lambda i=i, f=fn: f(i), 2) for i in idx]))
    r["chunks"] = "x".join(map(str, vol.chunks))
    if not cached:
        shutil.rmtree(uri, ignore_errors=True)
    return r


def print_table(name: str, res: dict[str, dict[str, Any]], raw_bytes: int) -> None:
    """One volume's table: ms, ratios to the ceilings, size."""
    ceil = res["np.load / mmap .npy (ceiling)"]
    print(f"\n== {name} ==")
    hdr = (
        f"{'method':46s} {'patch64':>8s} {'x mmap':>7s} {'full':>8s} {'thru/np':>7s} {'axial':>7s} {'sagit':>7s} "
        f"{'coron':>7s} {'open+1':>7s} {'MB':>7s} {'ratio':>6s} {'files':>6s} {'ingest':>7s} exact"
    )
    print(hdr)
    for m, r in res.items():
        if "_error" in r:
            print(f"{m:46s} not run: {r['_error']}")
            continue
        print(
            f"{m:46s} {r['patch_ms']:8.2f} {r['patch_ms'] / ceil['patch_ms']:7.2f} {r['full_ms']:8.1f} "
            f"{ceil['full_ms'] / r['full_ms']:7.2f} {r['axial_ms']:7.2f} "
            f"{r['sagittal_ms']:7.2f} {r['coronal_ms']:7.2f} "
            f"{r['open_ms']:7.2f} {r['bytes'] / 1e6:7.1f} {raw_bytes / r['bytes']:6.2f} {r['n_files']:6d} "
            f"{r['ingest_s']:7.2f} {r['exact']}"
        )


def targets(name: str, res: dict[str, dict[str, Any]], is_240: bool) -> list[str]:
    """PASS / MISS lines for the issue's targets, per radiobject row."""
    ceil, gz = res["np.load / mmap .npy (ceiling)"], res["nibabel .nii.gz"]
    lines = []
    for m, r in res.items():
        if not m.startswith("radiobject") or "_error" in r:
            continue
        checks = [
            (
                f"unaligned 64^3 patch {r['patch_ms']:.2f} ms <= 2x mmap .npy {ceil['patch_ms']:.2f} ms",
                r["patch_ms"] <= 2 * ceil["patch_ms"],
            ),
            (
                (
                    f"full volume {ceil['full_ms'] / r['full_ms']:.2f}x np.load throughput >= 0.5x "
                    f"({r['full_ms']:.1f} vs {ceil['full_ms']:.1f} ms)"
                ),
                r["full_ms"] <= 2 * ceil["full_ms"],
            ),
            (f"open + first voxel {r['open_ms']:.2f} ms <= 0.5 ms", r["open_ms"] <= 0.5),
            (f"size {r['bytes'] / 1e6:.1f} MB <= .nii.gz {gz['bytes'] / 1e6:.1f} MB", r["bytes"] <= gz["bytes"]),
        ]
        if is_240:
            worst = max(r["axial_ms"], r["sagittal_ms"], r["coronal_ms"])
            checks.append(
                (
                    (
                        f"every 240^2-class slice {worst:.2f} ms <= 1 ms "
                        f"(ax/sa/co {r['axial_ms']:.2f}/{r['sagittal_ms']:.2f}/{r['coronal_ms']:.2f})"
                    ),
                    worst <= 1.0,
                )
            )
        for text, ok in checks:
            lines.append(f"{'PASS' if ok else 'MISS'}  {name:4s} {m}: {text}")
    return lines


def plot(all_res: dict[str, dict[str, dict[str, Any]]], path: str) -> None:
    """Grouped bars (log ms) per operation, one panel per volume."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_res), figsize=(9 * len(all_res), 5), squeeze=False)
    for ax, (vol, res) in zip(axes[0], all_res.items(), strict=True):
        methods = [m for m in res if "_error" not in res[m]]
        w = 0.8 / max(1, len(methods))
        for k, m in enumerate(methods):
            vals = [res[m][op] for op in OPS]
            ax.bar(np.arange(len(OPS)) + k * w, vals, w, label=m)
        ax.set_xticks(np.arange(len(OPS)) + 0.4 - w / 2, [o.replace("_ms", "") for o in OPS])
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)")
        ax.set_title(f"{vol}: lower is better")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; returns 0 (targets are reported, not enforced)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="volume size factor (default 1 = full size)")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "radiobject-io-bench"))
    ap.add_argument("--ro011", default="/tmp/ro011-venv/bin/python", help="python of a venv with radiobject==0.1.1")
    ap.add_argument("--patches", type=int, default=10, help="random patches per volume")
    ap.add_argument("--only", default="mri,ct", help="volumes to run (mri,ct)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="radiobject-io-")
    print(
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; machine {platform.machine()} {os.cpu_count()} CPUs "
        f"{platform.system()} {platform.release()}; python {platform.python_version()}; load avg "
        f"{os.getloadavg()[0]:.1f}"
    )
    gens = {"mri": (mri_like, (240, 240, 155)), "ct": (ct_like, (512, 512, 300))}
    vols = {k: gens[k][0](tuple(max(16, round(n * args.scale)) for n in gens[k][1])) for k in args.only.split(",")}
    all_res: dict[str, dict[str, dict[str, Any]]] = {}
    ro_in: dict[str, dict[str, Any]] = {}
    try:
        for name, data in vols.items():
            patches, slices = probes(data.shape, args.patches)
            res = bench_numpy_files(name, data, work, patches, slices)
            with cold_chunk_cache():
                for b in ("zarr", "tiledb"):
                    res[f"radiobject {b} (chunk cache off)"] = bench_radiobject(
                        name, data, work, patches, slices, b, False
                    )
            res["radiobject zarr (64 MiB cache, warm)"] = bench_radiobject(
                name, data, work, patches, slices, "zarr", True
            )
            res["radiobject zarr (64 MiB cache, first touch)"] = bench_radiobject_first_touch(
                name, data, work, patches, slices
            )
            all_res[name] = res
            ro_in[name] = {
                "npy": os.path.join(work, f"{name}.npy"),
                "patches": [[[r.start, r.stop] for r in p] for p in patches],
                "slices": slices,
            }
        ro = run_ro011(args.ro011, ro_in, work)
        for name in vols:
            all_res[name]["radiobject 0.1.1 (PyPI, TileDB)"] = ro.get(name, {"_error": ro.get("_error", "no result")})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = []
    for name, res in all_res.items():
        print_table(f"{name} {'x'.join(map(str, vols[name].shape))} {vols[name].dtype}", res, vols[name].nbytes)
        lines += targets(name, res, is_240=name == "mri")
    print("\nTargets (issue 2):")
    print("\n".join(lines))
    with open(os.path.join(args.out, "io_results.json"), "w") as f:
        json.dump(
            {
                "date_utc": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "results": all_res,
                "targets": lines,
            },
            f,
            indent=1,
        )
    rows = [{"volume": v, "method": m, **r} for v, res in all_res.items() for m, r in res.items()]
    import pandas as pd

    pd.DataFrame(rows).to_csv(os.path.join(args.out, "io_results.csv"), index=False)
    plot(all_res, os.path.join(args.out, "io_bench.png"))
    print(f"\nwrote {args.out}/io_results.csv, io_results.json, io_bench.png; load avg {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
