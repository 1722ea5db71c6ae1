"""Cohort-ingest benchmark (issue 5): throughput, per-volume cost at scale, open time, S3 + disk cache.

1. Ingest throughput: a synthetic NIfTI cohort (``--subjects`` x T1w/FLAIR/seg, ``--shape``)
   through ``radiobject.ingest.run_ingest`` with 1 and 2 workers (threads, and 2 processes);
   volumes/s and MB/s (uncompressed voxel bytes), ratio 2 workers / 1 worker.
2. Scale: one ingest of ``--n-small`` small NIfTI files (16^3 int16, one subject each); the
   per-volume cost (mean gap between volume starts, commits included) around the 1st, 1,000th and 10,000th
   volume, ratio last / first. Then the open time of that store (``RadiObject(uri)``, subject IDs,
   one collection's ``obs``, first voxel) before and after compaction, and a later ingest of
   ``--batch`` more volumes into it vs into an empty store.
3. S3: the cohort ingested into ``s3://`` on a local ``moto_server`` (subprocess, 127.0.0.1), read
   by ``ml.loaders.create_training_dataloader`` (random 32^3 patches) with a disk cache: epoch 1
   (cold cache) and epoch 2 (warm) patches/s, vs S3 without a cache and vs the local store.

    .venv/bin/python benchmarks/ingest.py [--subjects 24] [--shape 128,128,96] [--n-small 10000]
                                           [--backend zarr] [--out DIR] [--skip-s3]

Prints tables and ratios; writes ingest_results.json into --out.
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
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from radiobject import RadiObject, WriteOptions
from radiobject.ingest import make_sample_cohort, plan_from_manifest, run_ingest


def bench_throughput(cohort_dir: str, work: str, backend: str) -> list[dict[str, Any]]:
    """Ingest the cohort with 1 thread, 2 threads and 2 processes (fresh store each, best of 2).

    The process runs include starting the spawn pool (importing radiobject in each worker)."""
    rows = []
    warm = os.path.join(work, "tp-warmup")  # imports, first tensorstore / codec use, page cache
    run_ingest(
        warm,
        plan_from_manifest(os.path.join(cohort_dir, "manifest.csv")),
        options=WriteOptions(backend=backend, workers=1),
    )
    shutil.rmtree(warm, ignore_errors=True)
    for label, workers, executor in (
        ("1 thread", 1, "thread"),
        ("2 threads", 2, "thread"),
        ("2 processes", 2, "process"),
    ):
        best: dict[str, Any] | None = None
        for rep_i in range(2):
            uri = os.path.join(work, f"tp-{workers}-{executor}-{rep_i}")
            plan = plan_from_manifest(os.path.join(cohort_dir, "manifest.csv"))
            t0 = time.perf_counter()
            rep = run_ingest(uri, plan, options=WriteOptions(backend=backend, workers=workers), executor=executor)
            secs = time.perf_counter() - t0
            assert rep.ok, rep.summary_table()
            n, mb = rep.count("written"), rep.bytes_written / 1e6
            row = {
                "run": label,
                "workers": workers,
                "executor": executor,
                "volumes": n,
                "seconds": secs,
                "volumes_per_s": n / secs,
                "mb_per_s": mb / secs,
                "mb": mb,
            }
            if best is None or row["seconds"] < best["seconds"]:
                best = row
            shutil.rmtree(uri, ignore_errors=True)
        rows.append(best)  # type: ignore[arg-type]  # best is set: at least one repeat ran
    return rows


def _small_cohort(folder: str, start: int, n: int, width: int = 5) -> str:
    """``n`` small NIfTI files (16^3 int16, uncompressed) and their manifest; returns the manifest."""
    import nibabel as nib

    os.makedirs(folder, exist_ok=True)
    base = np.random.default_rng(0).integers(0, 1000, (16, 16, 16), dtype=np.int16)
    rows = []
    for i in range(start, start + n):
        sid = f"s{i:0{width}d}"
        path = os.path.join(folder, f"{sid}.nii")
        nib.save(nib.Nifti1Image(base + np.int16(i % 7), np.eye(4)), path)
        rows.append({"subject_id": sid, "collection": "T1w", "path": path})
    manifest = os.path.join(folder, f"manifest-{start}.csv")
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def bench_scale(work: str, backend: str, n_small: int, batch: int) -> dict[str, Any]:
    """Per-volume cost along one ingest of ``n_small`` small volumes; open time; later appends."""
    from radiobject.ingest import tasks

    starts: list[float] = []
    original = tasks.load_image

    def recording(*a: Any, **k: Any) -> Any:  # when each volume starts being loaded
        starts.append(time.perf_counter())
        return original(*a, **k)

    folder = os.path.join(work, "small")
    manifest = _small_cohort(folder, 0, n_small)
    uri = os.path.join(work, "scale")
    tasks.load_image = recording  # to_ingest_item binds the module global at plan time
    try:
        t0 = time.perf_counter()
        rep = run_ingest(
            uri, plan_from_manifest(manifest), options=WriteOptions(backend=backend, workers=2), compact=False
        )
        total = time.perf_counter() - t0
    finally:
        tasks.load_image = original
    assert rep.ok and rep.count("written") == n_small, rep.summary_table()
    gaps = np.diff(np.sort(np.asarray(starts))) * 1e3
    window = max(10, min(50, n_small // 20))

    def cost_at(k: int) -> float:  # mean start-to-start gap around volume k (1-based): commits included
        lo = max(0, min(k - 1 - window, len(gaps) - 2 * window))
        return float(np.mean(gaps[lo : lo + 2 * window]))

    marks = {k: cost_at(k) for k in (1, 1000, 10000) if k <= n_small}

    def open_ms() -> dict[str, float]:
        best: dict[str, float] = {}
        for _ in range(3):
            t0 = time.perf_counter()
            r = RadiObject(uri)
            subjects = r.obs_subject_ids
            t1 = time.perf_counter()
            obs = r["T1w"].obs
            t2 = time.perf_counter()
            r["T1w"].by_subject(subjects[-1])[0:1, 0:1, 0:1]
            t3 = time.perf_counter()
            assert len(subjects) == n_small and len(obs) == n_small
            cur = {
                "open_subjects_ms": (t1 - t0) * 1e3,
                "obs_ms": (t2 - t1) * 1e3,
                "first_voxel_ms": (t3 - t2) * 1e3,
                "total_ms": (t3 - t0) * 1e3,
            }
            if not best or cur["total_ms"] < best["total_ms"]:
                best = cur
        return best

    n_frag = len(os.listdir(os.path.join(uri, "collections", "T1w", "obs")))
    before = open_ms()
    RadiObject(uri).compact()  # what run_ingest does by default at the end
    after = open_ms()
    # a later ingest of `batch` new volumes: into the full store vs into an empty one
    extra = _small_cohort(os.path.join(work, "small-extra"), n_small, batch)
    appends = {}
    for label, target in (("empty store", os.path.join(work, "scale-empty")), (f"{n_small}-volume store", uri)):
        t0 = time.perf_counter()
        r = run_ingest(target, plan_from_manifest(extra), options=WriteOptions(backend=backend, workers=2))
        appends[label] = (time.perf_counter() - t0) / batch * 1e3
        assert r.count("written") == batch
    shutil.rmtree(uri, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "n_volumes": n_small,
        "ingest_s": total,
        "per_volume_ms_at": marks,
        "window": window,
        "obs_fragments_before_compact": n_frag,
        "open_before_compact": before,
        "open_after_compact": after,
        "append_batch": batch,
        "append_ms_per_volume": appends,
    }


def bench_s3(cohort_dir: str, work: str, backend: str, patch: int) -> dict[str, Any]:
    """Patch loader throughput: local, S3 without cache, S3 with a disk cache cold then warm."""
    from radiobject.bench.s3server import LocalS3
    from radiobject.ml.loaders import create_training_dataloader

    server = LocalS3(bucket="bench", key="bench", secret="bench").start()
    storage = server.storage
    try:
        s3_uri, local = "s3://bench/store", os.path.join(work, "local")
        t0 = time.perf_counter()
        rep = run_ingest(
            s3_uri,
            plan_from_manifest(os.path.join(cohort_dir, "manifest.csv")),
            options=WriteOptions(backend=backend, workers=2),
            storage=storage,
        )
        s3_ingest = time.perf_counter() - t0
        assert rep.ok, rep.summary_table()
        run_ingest(
            local,
            plan_from_manifest(os.path.join(cohort_dir, "manifest.csv")),
            options=WriteOptions(backend=backend, workers=2),
        )
        kw = {
            "modalities": ["T1w", "FLAIR"],
            "label": "seg",
            "patch_size": (patch,) * 3,
            "batch_size": 2,
            "seed": 0,
            "patches_per_volume": 4,
        }

        def epoch(loader: Any, ep: int) -> float:
            if hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(ep)
            if hasattr(loader.dataset, "set_epoch"):
                loader.dataset.set_epoch(ep)
            n, t = 0, time.perf_counter()
            for b in loader:
                n += len(next(iter(b.values())) if isinstance(b, dict) else b[0])
            return n / (time.perf_counter() - t)

        out: dict[str, Any] = {"s3_ingest_s": s3_ingest, "volumes": rep.count("written"), "patch": patch}
        loc = create_training_dataloader(RadiObject(local), **kw)
        epoch(loc, 0)  # warm the OS page cache and imports
        out["local_patches_per_s"] = epoch(loc, 1)
        nocache = create_training_dataloader(RadiObject(s3_uri, storage=storage), **kw)
        out["s3_nocache_patches_per_s"] = epoch(nocache, 1)
        cache_dir = os.path.join(work, "diskcache")
        cached = create_training_dataloader(
            RadiObject(s3_uri, storage=storage), cache_strategy="disk", cache_path=cache_dir, cache_bytes=4 << 30, **kw
        )
        out["s3_cold_cache_patches_per_s"] = epoch(cached, 1)
        out["s3_warm_cache_patches_per_s"] = epoch(cached, 2)
        return out
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", type=int, default=24)
    ap.add_argument("--shape", default="128,128,96")
    ap.add_argument("--n-small", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--backend", default="zarr", choices=("zarr", "tiledb"))
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--skip-s3", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    work = tempfile.mkdtemp(prefix="radiobject-ingest-bench-")
    out_dir = args.out or work
    os.makedirs(out_dir, exist_ok=True)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "backend": args.backend,
        "subjects": args.subjects,
        "shape": shape,
    }
    try:
        # the ignore below: shape is the 3 ints parsed from --shape
        cohort = make_sample_cohort(os.path.join(work, "cohort"), args.subjects, shape)  # type: ignore[arg-type]
        print(
            f"cohort: {args.subjects} subjects x 3 volumes (T1w float32, FLAIR int16, seg uint8) {shape}; "
            f"backend {args.backend}; {os.cpu_count()} CPUs"
        )
        tp = bench_throughput(str(cohort.folder), work, args.backend)
        results["throughput"] = tp
        print(f"\n{'run':<12} {'volumes':>8} {'seconds':>8} {'vol/s':>8} {'MB/s':>8}")
        for r in tp:
            print(
                f"{r['run']:<12} {r['volumes']:>8} {r['seconds']:>8.2f} "
                f"{r['volumes_per_s']:>8.1f} {r['mb_per_s']:>8.1f}"
            )
        print(
            f"ratio 2 threads / 1 thread: {tp[1]['volumes_per_s'] / tp[0]['volumes_per_s']:.2f}x; "
            f"2 processes / 1 thread: {tp[2]['volumes_per_s'] / tp[0]['volumes_per_s']:.2f}x"
        )

        sc = bench_scale(work, args.backend, args.n_small, args.batch)
        results["scale"] = sc
        marks = sc["per_volume_ms_at"]
        print(
            f"\none ingest of {sc['n_volumes']} small volumes (16^3 int16 .nii, 2 threads): {sc['ingest_s']:.1f} s; "
            f"per-volume cost (mean start-to-start gap over {2 * sc['window']} volumes, commits included):"
        )
        for k, v in marks.items():
            print(f"  volume {k:>6}: {v:.2f} ms")
        last = max(marks)
        print(f"ratio volume {last} / volume 1: {marks[last] / marks[1]:.2f}x")
        for tag in ("open_before_compact", "open_after_compact"):
            o = sc[tag]
            print(
                f"open {sc['n_volumes']}-subject store ({tag.replace('open_', '').replace('_', ' ')}): "
                f"{o['total_ms']:.0f} ms (subjects {o['open_subjects_ms']:.0f}, obs {o['obs_ms']:.0f}, "
                f"first voxel {o['first_voxel_ms']:.1f})"
            )
        print(f"  obs fragments before compact: {sc['obs_fragments_before_compact']}")
        ap = sc["append_ms_per_volume"]
        big = f"{sc['n_volumes']}-volume store"
        print(
            f"later ingest of {sc['append_batch']} volumes, ms per volume (whole run): "
            + ", ".join(f"{k}: {v:.1f}" for k, v in ap.items())
            + f"; ratio {ap[big] / ap['empty store']:.2f}x"
        )

        if not args.skip_s3:
            s3 = bench_s3(str(cohort.folder), work, args.backend, args.patch)
            results["s3"] = s3
            print(f"\nS3 (moto_server on 127.0.0.1), random {args.patch}^3 patches, batch 2, 0 workers (patches/s):")
            for k in (
                "local_patches_per_s",
                "s3_nocache_patches_per_s",
                "s3_cold_cache_patches_per_s",
                "s3_warm_cache_patches_per_s",
            ):
                print(
                    f"  {k.replace('_patches_per_s', ''):<16} {s3[k]:8.1f}  "
                    f"({s3[k] / s3['local_patches_per_s']:.2f}x local)"
                )
            print(
                f"  warm / cold cache: {s3['s3_warm_cache_patches_per_s'] / s3['s3_cold_cache_patches_per_s']:.2f}x; "
                f"ingest into S3: {s3['s3_ingest_s']:.2f} s for {s3['volumes']} volumes"
            )
        with open(os.path.join(out_dir, "ingest_results.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
        print(f"\nresults: {os.path.join(out_dir, 'ingest_results.json')}")
    finally:
        if args.out is None or os.path.abspath(args.out) != os.path.abspath(work):
            shutil.rmtree(os.path.join(work, "cohort"), ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
