"""``recommend``: chunk / shard / codec settings for a stated access pattern, from a quick measured sweep.

Two stages on the user's volume (or the synthetic MRI-like one): (1) chunk shapes, sharded and not,
on Zarr (tensorstore) and TileDB with the default codec; (2) codecs at the winning chunk shape.
Each candidate gets ``score = time / best time + w x stored bytes / smallest`` (``w`` = 1 by default); the time is the
measured one for the access pattern (``patch:N`` unaligned N^3 patches, ``slice`` = slowest of the
three planes, ``full`` = whole volume). Only settings radiobject can write are recommended (Zarr is
always sharded there); unsharded rows are measured to show what sharding changes.

``--storage s3`` adds a request model to the local time, because the sweep runs on local disk:
``ceil(requests / concurrency) x latency`` with the requests counted from the geometry (chunks
touched by the access - for patches the mean over the measured random probes - +1 shard-index read
when sharded; a whole unsharded volume = one request per object, a whole shard = one).
Latency and concurrency are stated assumptions (flags), printed with the result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from radiobject.bench.engines import Config, chunk_label, chunks_touched
from radiobject.bench.sweep import SweepOptions, chunk_candidates, run_sweep

#: Weight of stored size against access time in the score (time / best + w x size / smallest).
SIZE_WEIGHT = 1.0
STAGE2_CODECS: tuple[tuple[str, int, str], ...] = (
    ("blosc-lz4", 1, "byte"),
    ("blosc-lz4", 5, "byte"),
    ("blosc-lz4", 5, "bit"),
    ("blosc-zstd", 1, "byte"),
    ("blosc-zstd", 3, "byte"),
    ("blosc-zstd", 5, "byte"),
    ("zstd", 3, "none"),
    ("gzip", 6, "none"),
    ("none", 0, "none"),
)


@dataclass(frozen=True)
class Access:
    """An access pattern: ``kind`` in patch / slice / full; ``edge`` for patches."""

    kind: str
    edge: int = 64

    @classmethod
    def parse(cls, text: str) -> Access:
        """``"patch:96"`` / ``"patch"`` (64) / ``"slice"`` / ``"full"``."""
        kind, _, edge = text.partition(":")
        if kind not in ("patch", "slice", "full") or (
            edge and (kind != "patch" or not edge.isdigit() or int(edge) < 1)
        ):
            raise ValueError(f"access must be patch:N, slice or full, got {text!r}")
        return cls(kind, int(edge) if edge else 64)

    @property
    def metric(self) -> str:
        return {"patch": "patch_ms", "slice": "slice_max_ms", "full": "full_ms"}[self.kind]

    def describe(self) -> str:
        return {
            "patch": f"random unaligned {self.edge}^3 patches",
            "slice": "single slices in all three planes",
            "full": "whole-volume reads",
        }[self.kind]


def requests_per_access(row: dict[str, Any], shape: tuple[int, ...], access: Access, edge: int) -> int:
    """Object-store requests one access needs (the model used for ``--storage s3``)."""
    chunks = tuple(int(c) for c in str(row["chunks"]).split("x"))
    if access.kind == "full":
        n = math.prod(math.ceil(s / c) for s, c in zip(shape, chunks, strict=True))
        return 1 if row["sharded"] else n  # a whole shard is one GET; unsharded: one GET per chunk object
    if access.kind == "patch":
        if "patch_chunks" in row and row["patch_chunks"] == row["patch_chunks"]:  # measured probes (not NaN)
            return math.ceil(float(row["patch_chunks"])) + (1 if row["sharded"] else 0)
        region = tuple(slice(1, 1 + min(edge, s)) for s in shape)
    else:  # slowest plane: the one crossing most chunks
        region = max(
            (tuple(slice(0, 1) if a == k else slice(0, s) for a, s in enumerate(shape)) for k in range(3)),
            key=lambda r: chunks_touched(r, chunks),
        )
    return chunks_touched(region, chunks) + (1 if row["sharded"] else 0)


def score(df: pd.DataFrame, access: Access, size_weight: float = SIZE_WEIGHT) -> pd.DataFrame:
    """Adds ``time_ms`` (the access metric, + modelled request time for S3) and ``score``."""
    df = df.copy()
    df["time_ms"] = df[access.metric] + df.get("request_ms", 0.0)
    df["score"] = df["time_ms"] / df["time_ms"].min() + size_weight * df["bytes"] / df["bytes"].min()
    return df.sort_values("score")


def _configs_stage1(shape: tuple[int, ...]) -> list[Config]:
    cfgs = []
    for chunks in chunk_candidates(shape):
        cfgs += [
            Config("zarr", "blosc-lz4", 5, "byte", chunks, True),
            Config("zarr", "blosc-lz4", 5, "byte", chunks, False),
            Config("tiledb", "blosc-lz4", 5, "byte", chunks, False),
        ]
    return cfgs


def _writable(df: pd.DataFrame) -> pd.DataFrame:
    """Settings radiobject's WriteOptions can express: sharded Zarr, or TileDB."""
    return df[((df["engine"] == "zarr") & df["sharded"]) | (df["engine"] == "tiledb")]


def recommend(
    volume: np.ndarray,
    access: Access,
    storage: str = "local",
    latency_ms: float = 20.0,
    concurrency: int = 16,
    opts: SweepOptions | None = None,
    size_weight: float = SIZE_WEIGHT,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Runs both stages; returns (stage-1 rows, stage-2 rows, the choice with its reasons)."""
    shape = volume.shape
    opts = opts or SweepOptions(
        patch=access.edge if access.kind == "patch" else 64, n_patches=8, n_slices=3, reps=2, rounds=3
    )
    t0 = time.perf_counter()

    def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
        df = pd.DataFrame(rows)
        df = df[df["exact"].fillna(False).astype(bool)] if "exact" in df else df.iloc[0:0]
        if storage == "s3":
            req = df.apply(lambda r: requests_per_access(r, shape, access, opts.patch), axis=1)
            df = df.assign(requests=req, request_ms=np.ceil(req / concurrency) * latency_ms)
        return score(df, access, size_weight)

    s1 = frame(run_sweep({"input": volume}, configs=_configs_stage1, opts=opts))
    best1 = _writable(s1).iloc[0]
    chunks = tuple(int(c) for c in best1["chunks"].split("x"))
    engine = str(best1["engine"])
    cfgs2 = [Config(engine, c, lv, sh, chunks, engine == "zarr") for c, lv, sh in STAGE2_CODECS]
    s2 = frame(run_sweep({"input": volume}, configs=lambda _s: cfgs2, opts=opts))
    best2 = s2.iloc[0]
    choice = {
        "engine": engine,
        "chunks": chunks,
        "codec": best2["codec"],
        "level": int(best2["level"]),
        "shuffle": best2["shuffle"],
        "row1": best1,
        "row2": best2,
        "seconds": time.perf_counter() - t0,
        "storage": storage,
        "latency_ms": latency_ms,
        "concurrency": concurrency,
        "shape": shape,
        "dtype": volume.dtype.name,
        "edge": opts.patch,
        "size_weight": size_weight,
    }
    return s1, s2, choice


def _fmt(r: pd.Series, access: Access) -> str:
    extra = f" + {r['request_ms']:.0f} ms modelled S3 ({int(r['requests'])} requests)" if "request_ms" in r else ""
    return (
        f"{r['label']}: {access.metric[:-3]} {r[access.metric]:.2f} ms{extra}, x{r['ratio']:.2f}, "
        f"{int(r['n_files'])} files, score {r['score']:.2f}"
    )


def explain(s1: pd.DataFrame, s2: pd.DataFrame, choice: dict[str, Any], access: Access) -> str:
    """The printed recommendation: settings, then why, from the measured rows."""
    shape = "x".join(map(str, choice["shape"]))
    codec = (
        choice["codec"]
        if choice["codec"] == "none"
        else f"{choice['codec']}:{choice['level']} ({choice['shuffle']} shuffle)"
    )
    lines = [
        f"Access: {access.describe()}; storage: {choice['storage']}; volume {shape} {choice['dtype']}",
        f"Measured {len(s1) + len(s2)} configurations in {choice['seconds']:.1f} s.",
        "",
        "Recommended:",
        f"  backend={choice['engine']}  chunks={choice['chunks']}  "
        + ("shards=one per volume (radiobject default)" if choice["engine"] == "zarr" else "shards=n/a (TileDB)")
        + f"  codec={codec}",
        (
            f"  WriteOptions(backend={choice['engine']!r}, chunks={choice['chunks']}, "
            f"codec=Codec({choice['codec']!r}, {choice['level']}, {choice['shuffle'] != 'none'}))"
        ),
        "",
        "Why:",
        f"  score = {access.metric} / best + {choice['size_weight']:g} x size / smallest (lower is better)",
    ]
    if choice["storage"] == "s3":
        lines.append(
            f"  S3 model: + ceil(requests / {choice['concurrency']}) x {choice['latency_ms']:.0f} ms per access "
            "(assumed latency; local disk measured)"
        )
    lines.append("  Stage 1, chunk shape and sharding (blosc-lz4:5/byte):")
    lines += [f"    {'*' if i == 0 else ' '} {_fmt(r, access)}" for i, (_, r) in enumerate(s1.iterrows())]
    sh = s1[(s1["engine"] == "zarr") & (s1["chunks"] == chunk_label(choice["chunks"]))]
    if sh["sharded"].nunique() == 2:
        a, b = sh[sh["sharded"]].iloc[0], sh[~sh["sharded"]].iloc[0]
        lines.append(
            f"  Sharding at {chunk_label(choice['chunks'])}: {int(a['n_files'])} files instead of {int(b['n_files'])}; "
            f"{access.metric[:-3]} {a[access.metric]:.2f} vs {b[access.metric]:.2f} ms unsharded."
        )
    lines.append(f"  Stage 2, codec at {chunk_label(choice['chunks'])} on {choice['engine']}:")
    lines += [f"    {'*' if i == 0 else ' '} {_fmt(r, access)}" for i, (_, r) in enumerate(s2.iterrows())]
    best_time = s2.sort_values("time_ms").iloc[0]
    best_size = s2.sort_values("bytes").iloc[0]
    lines.append(
        f"  Fastest codec {best_time['codec']}:{best_time['level']} "
        f"({best_time['time_ms']:.2f} ms, x{best_time['ratio']:.2f}); "
        f"smallest {best_size['codec']}:{best_size['level']} "
        f"(x{best_size['ratio']:.2f}, {best_size['time_ms']:.2f} ms)."
    )
    return "\n".join(lines)


def default_volume(scale: float = 1.0) -> np.ndarray:
    """The synthetic MRI-like volume used when no input is given."""
    from radiobject.bench.synthetic import synthetic_volume

    return synthetic_volume("mri", scale)


__all__ = ["Access", "default_volume", "explain", "recommend", "requests_per_access"]
