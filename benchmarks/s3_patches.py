"""Patch reads on S3 against the same store on local disk (issue 12, figure d): cold and warm.

    .venv/bin/python benchmarks/s3_patches.py [--volumes 8] [--patches 100] [--sizes 32,96]
        [--backends zarr,tiledb] [--caches none,memory,disk] [--plot s3.png] [--json out.json]

A real S3 server (``moto_server``, a subprocess on 127.0.0.1, started and stopped here) and a local
directory receive the same cohort: ``--volumes`` MRI-like float32 volumes of 160x192x144
(``radiobject.bench.synthetic.mri_like``), written with default settings. Every configuration
(store x backend x cache x patch size) runs in a fresh subprocess and reads random patches through
the training path (``VolumeReader.read_patch_into``, 0 workers): a **cold** pass (fresh process,
empty caches, volumes opened on first touch) and a **warm** pass (fresh random draws, same
process: tensorstore's shipped chunk pool plus the cache under test). Caches, with their shipped
defaults (2 GiB budget, so this cohort fits and whole decoded volumes are cached): ``none``,
``memory`` (``InMemoryCache``), ``disk`` (``DiskCache`` in a fresh directory).

What the server was asked for: the child sends a marker request before each pass, so the server's
request log splits into passes (GET / HEAD / other counts); tensorstore's own counters
(``/tensorstore/kvstore/s3/read`` and ``bytes_read``) give the bytes the Zarr reads fetched. They are
compared with the bytes of the inner chunks the pass's patches touch, read from the shard indexes
of the local copy, *needed* two ways: summed per patch (what a client without any cache must
fetch) and each distinct chunk once per pass (an ideal client whose cache holds the cohort);
``amplification = fetched / needed`` for both (below 1: tensorstore's chunk pool served some).
Date, machine and load are printed: the machine may be shared with other work.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.codec_default import header

SHAPE = (160, 192, 144)
BUCKET = "radiobject-bench"
MARK = "__bench_mark__"
_LOG_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/[0-9.]+(?:\x1b\[[0-9;]*m)*" (\d+)')


# --------------------------------------------------------------------------- the server
def moto_server(log: Path) -> Any:
    """``moto_server`` on a free port of 127.0.0.1 with bucket ``BUCKET``, its request log in ``log``."""
    from radiobject.bench.s3server import LocalS3

    return LocalS3(bucket=BUCKET, log=log)


def storage_for(url: str) -> Any:
    from radiobject import StorageOptions

    return StorageOptions(endpoint_url=url, key="testing", secret="testing", region="us-east-1")


def mark(url: str, label: str) -> None:
    """A request the server logs (and answers 404): splits its log into passes."""
    try:
        urllib.request.urlopen(f"{url}/{BUCKET}/{MARK}{label}", timeout=5).close()
    except Exception:  # noqa: BLE001 - a 404 is the expected answer
        pass


def log_counts(log: Path, since: int) -> tuple[dict[str, dict[str, int]], int]:
    """Requests per pass (``{label: {"GET": n, ...}}``) in the server log after byte ``since``."""
    data = log.read_bytes()
    passes: dict[str, dict[str, int]] = {}
    current = None
    for line in data[since:].decode(errors="replace").splitlines():
        m = _LOG_LINE.search(line)
        if not m:
            continue
        method, path, status = m.groups()
        if MARK in path:
            current = path.split(MARK, 1)[1]
            passes[current] = {}
            continue
        if current is not None:
            kind = method + (" shard" if "/c/" in path else "") + (" 304" if status == "304" else "")
            passes[current][kind] = passes[current].get(kind, 0) + 1
    return passes, len(data)


# --------------------------------------------------------------------------- the cohort
def prepare(work: Path, url: str, n: int, backends: list[str]) -> None:
    from radiobject import ImageData, RadiObject, WriteOptions
    from radiobject.bench.synthetic import mri_like

    imgs = {f"s{i:02d}": ImageData(mri_like(SHAPE, seed=i), np.eye(4), {}, "synthetic") for i in range(n)}
    st = storage_for(url)
    for backend in backends:
        local = work / f"local-{backend}"
        shutil.rmtree(local, ignore_errors=True)
        t0 = time.perf_counter()
        RadiObject.from_images(str(local), {"img": imgs}, options=WriteOptions(backend=backend))
        t1 = time.perf_counter()
        RadiObject.from_images(
            f"s3://{BUCKET}/{backend}", {"img": imgs}, options=WriteOptions(backend=backend), storage=st
        )
        t2 = time.perf_counter()
        print(f"wrote {backend}: local {t1 - t0:.1f} s, s3 {t2 - t1:.1f} s")


def chunk_table(local_store: Path) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], dict]]:
    """Per subject: (inner chunk shape, shard shape, {inner chunk grid index: stored bytes}) of the local Zarr copy."""
    out = {}
    for meta_path in local_store.glob("collections/img/volumes/*/*/zarr.json"):
        meta = json.loads(meta_path.read_text())
        shard = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        inner = tuple(meta["codecs"][0]["configuration"]["chunk_shape"])
        per_shard = [s // c for s, c in zip(shard, inner, strict=True)]
        sizes: dict[tuple[int, ...], int] = {}
        for f in meta_path.parent.glob("c/*/*/*"):
            sidx = tuple(int(p) for p in f.relative_to(meta_path.parent / "c").parts)
            n = math.prod(per_shard)
            raw = f.read_bytes()[-(n * 16 + 4) : -4]
            entries = struct.unpack(f"<{2 * n}Q", raw)
            for k, local_idx in enumerate(np.ndindex(*per_shard)):
                nbytes = entries[2 * k + 1]
                if nbytes != 2**64 - 1:
                    sizes[tuple(s * p + i for s, p, i in zip(sidx, per_shard, local_idx, strict=True))] = nbytes
        out[meta_path.parent.parent.name] = (inner, shard, sizes)
    return out


def draws(n: int, patch: int, count: int, seed: int) -> list[tuple[int, list[int]]]:
    rng = np.random.default_rng(seed)
    return [(int(s), [int(rng.integers(0, d - patch + 1)) for d in SHAPE]) for s in rng.integers(0, n, count)]


def needed_bytes(table: dict, subjects: list[str], todo: list[tuple[int, list[int]]], patch: int) -> tuple[int, int]:
    """Stored bytes of the inner chunks the patches of one pass touch: summed per patch (what a
    client without any cache must fetch), and of the distinct chunks (each once per pass)."""
    seen: set[tuple[str, tuple[int, ...]]] = set()
    per_patch = distinct = 0
    for s, o in todo:
        inner, _, sizes = table[subjects[s]]
        ranges = [range(a // c, (a + patch - 1) // c + 1) for a, c in zip(o, inner, strict=True)]
        for idx in np.ndindex(*(len(r) for r in ranges)):
            key = (subjects[s], tuple(r[i] for r, i in zip(ranges, idx, strict=True)))
            nbytes = sizes.get(key[1], 0)
            per_patch += nbytes
            if key not in seen:
                seen.add(key)
                distinct += nbytes
    return per_patch, distinct


# --------------------------------------------------------------------------- one configuration
def ts_counters(scheme: str) -> dict[str, int]:
    import tensorstore as ts

    got = {}
    for m in ts.experimental_collect_matching_metrics(f"/tensorstore/kvstore/{scheme}/"):
        name = m["name"].rsplit("/", 1)[-1]
        if name in ("read", "bytes_read") and "value" in m["values"][0]:
            got[name] = int(m["values"][0]["value"])
    return got


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    from radiobject import RadiObject
    from radiobject.ml.cache import make_cache
    from radiobject.ml.reader import VolumeReader

    where, backend, cache_name, patch = args.one.split(":")
    patch = int(patch)
    work = Path(args.workdir)
    if where == "s3":
        radi = RadiObject(f"s3://{BUCKET}/{backend}", storage=storage_for(args.url))
    else:
        radi = RadiObject(str(work / f"local-{backend}"))
    cache_dir = work / f"cache-{os.getpid()}"
    cache = {"none": lambda: make_cache("none"), "memory": lambda: make_cache("in_memory")}.get(
        cache_name, lambda: make_cache("disk", path=cache_dir)
    )()
    reader = VolumeReader.from_radi(radi, "img", cache=cache)
    out = np.empty((1, patch, patch, patch), np.float32)
    scheme = "s3" if where == "s3" else "file"
    res: dict[str, Any] = {"config": args.one}
    try:
        for label, seed in (("cold", 1), ("warm", 2)):
            todo = draws(len(reader), patch, args.patches, seed)
            if where == "s3":
                mark(args.url, f"{args.one}:{label}")
            c0 = ts_counters(scheme)
            t0 = time.perf_counter()
            for s, o in todo:
                reader.read_patch_into(s, o, (patch,) * 3, out)
            dt = time.perf_counter() - t0
            c1 = ts_counters(scheme)
            res[label] = {
                "rate": args.patches / dt,
                "ts_reads": c1.get("read", 0) - c0.get("read", 0),
                "ts_bytes": c1.get("bytes_read", 0) - c0.get("bytes_read", 0),
            }
        if where == "s3":
            mark(args.url, f"{args.one}:end")
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return res


# --------------------------------------------------------------------------- driver
def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.9), 4))
    ax.bar(x - 0.2, [r["cold_ratio"] for r in rows], 0.4, label="cold S3 / local")
    ax.bar(x + 0.2, [r["warm_ratio"] for r in rows], 0.4, label="warm S3 / local")
    ax.axhline(0.3, ls="--", c="C0", lw=0.8)
    ax.axhline(0.9, ls="--", c="C1", lw=0.8)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("patches/s, S3 / local")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volumes", type=int, default=8)
    ap.add_argument("--patches", type=int, default=100)
    ap.add_argument("--sizes", default="32,96")
    ap.add_argument("--backends", default="zarr,tiledb")
    ap.add_argument("--caches", default="none,memory,disk")
    ap.add_argument("--workdir", default="/tmp/radiobject-s3bench")
    ap.add_argument("--plot")
    ap.add_argument("--json")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args)))
        return 0
    print(header())
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    backends = args.backends.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[dict[str, Any]] = []
    with moto_server(work / "moto.log") as server:
        prepare(work, server.url, args.volumes, backends)
        print(
            f"cohort {args.volumes} x {SHAPE} float32 = {args.volumes * math.prod(SHAPE) * 4 / 2**20:.0f} MB decoded; "
            f"{args.patches} random patches per pass"
        )
        table = chunk_table(work / "local-zarr") if "zarr" in backends else {}
        subjects = sorted(table)
        _, pos = log_counts(server.log, 0)
        for backend in backends:
            for cache in args.caches.split(","):
                for patch in sizes:
                    row: dict[str, Any] = {"backend": backend, "cache": cache, "patch": patch}
                    for where in ("local", "s3"):
                        cfg = f"{where}:{backend}:{cache}:{patch}"
                        cmd = [sys.executable, __file__, "--one", cfg, "--workdir", str(work), "--url", server.url]
                        cmd += ["--patches", str(args.patches)]
                        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
                        if proc.returncode != 0:
                            print(f"{cfg}: failed: {proc.stderr.strip().splitlines()[-3:]}")
                            row[where] = None
                            continue
                        row[where] = json.loads(proc.stdout.strip().splitlines()[-1])
                    counts, pos = log_counts(server.log, pos)
                    for label, seed in (("cold", 1), ("warm", 2)):
                        key = f"s3:{backend}:{cache}:{patch}:{label}"
                        row[f"{label}_requests"] = counts.get(key, {})
                        if table and backend == "zarr":
                            row[f"{label}_needed"] = needed_bytes(
                                table, subjects, draws(args.volumes, patch, args.patches, seed), patch
                            )
                    results.append(row)
                    report_row(row)
    summary = summarize(results)
    if args.plot and summary:
        plot(summary, args.plot)
    print(header())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def report_row(row: dict[str, Any]) -> None:
    loc, s3 = row.get("local"), row.get("s3")
    if not loc or not s3:
        return
    name = f"{row['backend']} {row['cache']:6s} {row['patch']}^3"
    for label in ("cold", "warm"):
        req = row[f"{label}_requests"]
        gets, checks = req.get("GET shard", 0), req.get("GET shard 304", 0)
        meta = sum(v for k, v in req.items() if not k.startswith("GET shard"))
        fetched = s3[label]["ts_bytes"]
        per_patch, distinct = row.get(f"{label}_needed") or (0, 0)
        amp = f"{fetched / per_patch:5.2f} / {fetched / distinct:5.2f}" if distinct else "n/a"
        print(
            f"{name} {label}: local {loc[label]['rate']:7.1f}/s  s3 {s3[label]['rate']:7.1f}/s  "
            f"ratio {s3[label]['rate'] / loc[label]['rate']:5.2f}  shard GETs {gets:5d} (+{checks} 304)  "
            f"other requests {meta:4d}  tensorstore reads {s3[label]['ts_reads']:5d}  "
            f"fetched {fetched / 2**20:7.2f} MiB  needed per patch / distinct {per_patch / 2**20:7.2f} / "
            f"{distinct / 2**20:6.2f} MiB  amplification {amp}",
            flush=True,
        )


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        if r.get("local") and r.get("s3"):
            rows.append(
                {
                    "label": f"{r['backend']} {r['cache']} {r['patch']}^3",
                    "cold_ratio": r["s3"]["cold"]["rate"] / r["local"]["cold"]["rate"],
                    "warm_ratio": r["s3"]["warm"]["rate"] / r["local"]["warm"]["rate"],
                }
            )
    return rows


if __name__ == "__main__":
    sys.exit(main())
