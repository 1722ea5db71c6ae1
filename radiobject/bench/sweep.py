"""The storage sweep: backend x codec x shuffle x level x chunk shape x sharding, measured.

Each configuration is written once, then read through a fresh handle: one full volume (into a
preallocated buffer, checked bit-exact against the original), random *unaligned* cubic patches,
one slice in each plane, and open + first voxel. Sizes and file counts come from the files on disk.
tensorstore's decoded-chunk cache is off while timing (``cold_chunk_cache``) so that repeated reads
measure decoding rather than cache hits; the OS page cache is warm (the files were just written).
All configurations of a volume are written first, then timed in interleaved rounds; each probe keeps
its best time over rounds and the row reports the median over probes (full volume: the best). On a
shared machine the minimum is the least disturbed estimate, and interleaving spreads load bursts
over all configurations instead of penalising whichever ran during one.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from radiobject.bench.engines import (
    Config,
    chunk_label,
    chunks_touched,
    clip_chunks,
    cold_chunk_cache,
    disk_usage,
    open_reader,
    supported,
    write,
)

#: The chunk shapes of the study: cubes 16^3..128^3 and a slab that is thin along z (axial
#: viewing); (128, 128, 16) in our x, y, z order is the study's (16, 128, 128) in z, y, x order.
CHUNK_SHAPES: tuple[tuple[int, int, int], ...] = ((16,) * 3, (32,) * 3, (64,) * 3, (128,) * 3, (128, 128, 16))
MODES: tuple[str, ...] = ("tiny", "quick", "full")
#: The lead's current default: 32^3 inner chunks, blosc-lz4:5 byte shuffle, one shard per volume.
DEFAULT = ("blosc-lz4", 5, "byte", (32, 32, 32), True)


@dataclass(frozen=True)
class SweepOptions:
    """How much to measure: the main patch edge (and ``extra_patches`` edges), number of random
    patches / slices, full reads per round (best of ``reps``), reads per probe per round
    (``region_reps``) and interleaved ``rounds``; each probe keeps its best time, the row the median
    over probes."""

    patch: int = 64
    n_patches: int = 10
    n_slices: int = 3
    reps: int = 2
    region_reps: int = 1
    rounds: int = 3
    extra_patches: tuple[int, ...] = ()
    seed: int = 0


def chunk_candidates(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The study's chunk shapes clipped to ``shape``, duplicates (after clipping) removed."""
    out: list[tuple[int, ...]] = []
    for c in CHUNK_SHAPES:
        cc = clip_chunks(c, shape)
        if cc not in out:
            out.append(cc)
    return out


def plan(shape: tuple[int, ...], mode: str = "quick") -> list[Config]:
    """The configurations of a sweep. ``tiny`` (tests) and ``quick`` vary one factor at a time around
    the default; ``full`` adds every level 1-9, all shuffles and the codec grid on TileDB."""
    if mode not in MODES:
        raise ValueError(f"unknown sweep mode {mode!r}; choose one of {', '.join(MODES)}")
    base = clip_chunks((32, 32, 32), shape)
    cands = chunk_candidates(shape)
    cfgs: list[Config] = []
    full = mode == "full"
    # A. codec x level x shuffle, zarr engine at the default chunking
    levels: dict[str, tuple[int, ...]] = {
        "blosc-lz4": (1, 3, 5, 7, 9) if full else (1, 5, 9),
        "blosc-zstd": (1, 3, 5, 7, 9) if full else (1, 3, 5, 9),
        "zstd": (1, 3, 5, 7, 9, 15) if full else (1, 3, 9),
        "gzip": (1, 3, 5, 7, 9) if full else (1, 6),
    }
    if mode == "tiny":
        levels = {"blosc-lz4": (5,), "blosc-zstd": (3,), "zstd": (3,), "gzip": (6,)}
    for chunks in (base, clip_chunks((64,) * 3, shape)) if full else (base,):
        for codec, lv in levels.items():
            for level in lv:
                shuffles = (
                    ("none", "byte", "bit")
                    if full or (codec.startswith("blosc") and level == lv[len(lv) // 2])
                    else ("byte",)
                )
                for sh in shuffles:
                    cfgs.append(Config("zarr", codec, level, sh if codec.startswith("blosc") else "none", chunks, True))
        cfgs.append(Config("zarr", "none", 0, "none", chunks, True))
    # B. chunk shape x sharding, zarr engine, default codec (and blosc-zstd:3 / zstd:3 in full)
    codecs = [("blosc-lz4", 5, "byte")] + ([("blosc-zstd", 3, "byte"), ("zstd", 3, "none")] if full else [])
    for codec, level, sh in codecs:
        for chunks in cands:
            for sharded in (True, False):
                cfgs.append(Config("zarr", codec, level, sh, chunks, sharded))
    # C. TileDB: chunk shapes at the default codec; a codec grid at 64^3 (full) or two codecs (quick)
    for chunks in cands:
        cfgs.append(Config("tiledb", "blosc-lz4", 5, "byte", chunks, False))
    c64 = clip_chunks((64,) * 3, shape)
    tgrid = (
        [(c, lv, sh) for c in ("blosc-lz4", "zstd", "gzip") for lv in (1, 5, 9) for sh in ("none", "byte", "bit")]
        if full
        else [("zstd", 3, "byte"), ("blosc-lz4", 5, "bit")][: 1 if mode == "tiny" else 2]
    )
    for codec, level, sh in tgrid:
        cfgs.append(Config("tiledb", codec, level, sh, c64, False))
    # D. zarr-python, Zarr format 2 vs 3 (sharded and not), same codec
    for chunks in cands if full else [base] if mode == "tiny" else [base, c64]:
        cfgs.append(Config("zarr-python-v2", "blosc-lz4", 5, "byte", chunks, False))
        cfgs.append(Config("zarr-python-v3", "blosc-lz4", 5, "byte", chunks, False))
        cfgs.append(Config("zarr-python-v3", "blosc-lz4", 5, "byte", chunks, True))
    seen: set[Config] = set()
    # the ignore below: set.add returns None: used for its effect (order-keeping dedup)
    return [c for c in cfgs if supported(c) and not (c in seen or seen.add(c))]  # type: ignore[func-returns-value]


def _unaligned_starts(n: int, p: int, rng: np.random.Generator, count: int) -> list[int]:
    """Random starts in [0, n - p], nudged off multiples of 8 (so off every chunk boundary we test)."""
    hi = n - p
    out = []
    for s in rng.integers(0, hi + 1, size=count):
        s = int(s)
        if s % 8 == 0 and hi > 0:
            s = s + 1 if s < hi else s - 1
        out.append(s)
    return out


@dataclass(frozen=True)
class Probes:
    """The regions every configuration of one volume is timed on (the same for all)."""

    patch_sets: dict[int, list[tuple[slice, ...]]]
    slices: dict[str, list[int]]
    patch_edge: int

    @property
    def patches(self) -> list[tuple[slice, ...]]:
        """The patches of the main edge."""
        return self.patch_sets[self.patch_edge]


def make_probes(shape: tuple[int, ...], opts: SweepOptions) -> Probes:
    """Random unaligned cubic patches (per edge, clipped to the volume) and slice indices (seeded)."""
    rng = np.random.default_rng(opts.seed)
    sets: dict[int, list[tuple[slice, ...]]] = {}
    for edge in (opts.patch, *opts.extra_patches):
        p = min(edge, *shape)
        if p in sets:
            continue
        starts = [_unaligned_starts(n, p, rng, opts.n_patches) for n in shape]
        sets[p] = [tuple(slice(s[i], s[i] + p) for s in starts) for i in range(opts.n_patches)]
    planes = {"sagittal": 0, "coronal": 1, "axial": 2}  # identity affine: x = L-R, y = P-A, z = I-S
    slices = {k: [int(i) for i in rng.integers(0, shape[a], size=opts.n_slices)] for k, a in planes.items()}
    return Probes(sets, slices, min(opts.patch, *shape))


def _plane_region(shape: tuple[int, ...], plane: str, index: int) -> tuple[slice, ...]:
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    return tuple(slice(index, index + 1) if a == axis else slice(0, n) for a, n in enumerate(shape))


def _min_ms(fn: Callable[[], Any], reps: int) -> float:
    """Best of ``reps`` timings (ms): the least disturbed by other processes on a shared machine."""
    times = []
    for _ in range(max(1, reps)):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(min(times))


def prepare(cfg: Config, data: np.ndarray, path: str) -> dict[str, Any]:
    """Writes ``data`` with ``cfg`` at ``path``; returns the row with write time, size, file count,
    open + first voxel and the bit-exact check of a full read."""
    chunks = clip_chunks(cfg.chunks, data.shape)
    row: dict[str, Any] = {
        "engine": cfg.engine,
        "codec": cfg.codec,
        "level": cfg.level,
        "shuffle": cfg.shuffle,
        "chunks": chunk_label(chunks),
        "chunk_kib": math.prod(chunks) * data.itemsize / 1024,
        "sharded": cfg.sharded,
        "label": cfg.label(),
    }
    t = time.perf_counter()
    write(cfg, path, data)
    row["write_s"] = time.perf_counter() - t
    row["bytes"], row["n_files"] = disk_usage(path)
    row["ratio"] = data.nbytes / max(row["bytes"], 1)
    t = time.perf_counter()
    reader = open_reader(cfg, path)
    reader.read(tuple(slice(0, 1) for _ in data.shape), np.empty((1,) * data.ndim, data.dtype))
    row["open_ms"] = (time.perf_counter() - t) * 1e3
    full = np.empty_like(data)
    reader.read(tuple(slice(0, n) for n in data.shape), full)
    row["exact"] = bool(np.array_equal(full, data))
    return row


def time_reads(
    cfg: Config,
    data: np.ndarray,
    path: str,
    probes: Probes,
    opts: SweepOptions,
    best: dict[str, list[float]],
    check: bool,
) -> bool:
    """One timing round through a fresh handle: every probe read ``region_reps`` times; ``best``
    keeps each probe's minimum over rounds. Returns False when a patch differs from the original."""
    reader = open_reader(cfg, path)
    exact = True

    def keep(key: str, values: list[float]) -> None:
        old = best.get(key)
        best[key] = values if old is None else [min(a, b) for a, b in zip(old, values, strict=True)]

    whole = tuple(slice(0, n) for n in data.shape)
    full = np.empty_like(data)
    keep("full_ms", [_min_ms(lambda: reader.read(whole, full), opts.reps)])
    for edge, patches in probes.patch_sets.items():
        out = np.empty(tuple(r.stop - r.start for r in patches[0]), data.dtype)
        times = []
        for region in patches:
            times.append(_min_ms(partial(reader.read, region, out), opts.region_reps))
            if check:
                exact = exact and bool(np.array_equal(out, data[region]))
        keep(f"patch{edge}_ms", times)
    for plane, indices in probes.slices.items():
        times = []
        for i in indices:
            region = _plane_region(data.shape, plane, i)
            buf = np.empty(tuple(r.stop - r.start for r in region), data.dtype)
            times.append(_min_ms(partial(reader.read, region, buf), opts.region_reps))
        keep(f"{plane}_ms", times)
    return exact


def finish(row: dict[str, Any], best: dict[str, list[float]], data: np.ndarray, probes: Probes) -> None:
    """Medians over probes of the per-probe minima; the main patch edge is also ``patch_ms``."""
    for key, values in best.items():
        row[key] = float(np.median(values))
    row["patch_ms"] = row[f"patch{probes.patch_edge}_ms"]
    row["patch_edge"] = probes.patch_edge
    chunks = tuple(int(c) for c in row["chunks"].split("x"))
    row["patch_chunks"] = float(np.mean([chunks_touched(r, chunks) for r in probes.patches]))
    row["full_mbps"] = data.nbytes / 1e6 / (row["full_ms"] / 1e3)
    row["slice_max_ms"] = max(row["axial_ms"], row["coronal_ms"], row["sagittal_ms"])


def _error_row(cfg: Config, shape: tuple[int, ...], exc: Exception) -> dict[str, Any]:
    return {
        "engine": cfg.engine,
        "codec": cfg.codec,
        "level": cfg.level,
        "shuffle": cfg.shuffle,
        "chunks": chunk_label(clip_chunks(cfg.chunks, shape)),
        "sharded": cfg.sharded,
        "label": cfg.label(),
        "error": f"{type(exc).__name__}: {exc}",
    }


def run_sweep(
    volumes: dict[str, np.ndarray],
    configs: Callable[[tuple[int, ...]], list[Config]] | None = None,
    opts: SweepOptions | None = None,
    workdir: str | None = None,
    mode: str = "quick",
    progress: Callable[[str], None] | None = None,
    keep: bool = False,
) -> list[dict[str, Any]]:
    """Measures every configuration on every volume; returns rows (one per volume x config).

    All configurations of a volume are written first; reads are then timed in ``opts.rounds``
    interleaved rounds (each round visits every configuration), keeping each probe's best time,
    so that a burst of load from other processes does not land on one configuration only.
    ``configs(shape)`` picks the configurations (default: :func:`plan` in ``mode``). Stores are
    written under ``workdir`` (a temporary folder when ``None``) and removed unless ``keep``.
    """
    opts = opts or SweepOptions()
    pick = configs or (lambda shape: plan(shape, mode))
    tmp = workdir or tempfile.mkdtemp(prefix="radiobject-bench-")
    rows: list[dict[str, Any]] = []
    try:
        with cold_chunk_cache():
            for name, data in volumes.items():
                data = np.ascontiguousarray(data)
                probes = make_probes(data.shape, opts)
                cfgs = pick(data.shape)
                done: list[tuple[Config, str, dict[str, Any], dict[str, list[float]]]] = []
                for k, cfg in enumerate(cfgs):
                    path = os.path.join(tmp, f"{name}-{k:03d}")
                    try:
                        row = prepare(cfg, data, path)
                    except Exception as exc:  # noqa: BLE001 - one failing engine must not end the sweep
                        row = _error_row(cfg, data.shape, exc)
                    row.update(
                        {
                            "volume": name,
                            "shape": "x".join(map(str, data.shape)),
                            "dtype": data.dtype.name,
                            "raw_mb": data.nbytes / 1e6,
                        }
                    )
                    rows.append(row)
                    done.append((cfg, path, row, {}))
                    if progress:
                        progress(
                            f"[{name} write {k + 1}/{len(cfgs)}] {cfg.label()}: "
                            + (
                                row.get("error")
                                or f"x{row['ratio']:.2f}, {row['n_files']} files, {row['write_s']:.2f} s"
                            )
                        )
                for rnd in range(opts.rounds):
                    for cfg, path, row, best in done:
                        if "error" in row:
                            continue
                        try:
                            ok = time_reads(cfg, data, path, probes, opts, best, check=rnd == 0)
                            row["exact"] = row["exact"] and ok
                        except Exception as exc:
                            row["error"] = f"{type(exc).__name__}: {exc}"
                    if progress:
                        progress(f"[{name}] timing round {rnd + 1}/{opts.rounds} done")
                for k, (_cfg, path, row, best) in enumerate(done):
                    if "error" not in row:
                        finish(row, best, data, probes)
                    if progress:
                        progress(_progress_line(k + 1, len(done), name, row))
                    if not keep:
                        shutil.rmtree(path, ignore_errors=True)
    finally:
        if workdir is None and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _progress_line(i: int, n: int, name: str, row: dict[str, Any]) -> str:
    if "error" in row:
        return f"[{name} {i}/{n}] {row['label']}: ERROR {row['error']}"
    return (
        f"[{name} {i}/{n}] {row['label']}: x{row['ratio']:.2f} {row['n_files']} files, write {row['write_s']:.2f} s, "
        f"full {row['full_ms']:.1f} ms, patch {row['patch_ms']:.2f} ms, slices ax/co/sa "
        f"{row['axial_ms']:.2f}/{row['coronal_ms']:.2f}/{row['sagittal_ms']:.2f} ms"
        f"{'' if row['exact'] else '  NOT BIT-EXACT'}"
    )


def lossless_failures(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Labels of configurations that did not round-trip bit-exactly (or failed)."""
    return [f"{r['volume']}: {r['label']}" for r in rows if not r.get("exact", False)]
