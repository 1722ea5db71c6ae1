"""Reading a region of a volume through a cache of its *chunks* (:func:`read_chunked`).

Caches hold the volume's own storage chunks (decoded), never whole volumes: a patch needs only
the chunks it touches, so a cache smaller than the cohort still holds useful data under random
patch sampling, and a hit saves exactly the decode it stands for.

One read: look every touched chunk up; if any is missing, read the chunk-aligned box around the
missing ones with **one** backend read (tensorstore / TileDB decode its chunks in parallel, and
decode no chunk that an unaligned read of the region would not decode too), copy the region's
part of the box straight into the output, and offer the new chunks to the cache. Chunks that hit
and lie outside the box are copied from the cache.

Admission: while the cache has room every new chunk is stored. Once it is nearly full, under
random sampling its hit rate is about its share of the cohort whatever it admits, while every
stored chunk costs a copy (and, for file caches, a write); new chunks are then admitted with
probability :data:`ADMIT_WHEN_FULL`, and :class:`CacheUse` bypasses a full cache whose hit rate is
too low to pay for the assembly, so a small cache is not slower than no cache.

Whole volumes (:func:`read_whole`): when the decoded cohort fits the cache's budget, assembling
every patch from its ~64 chunks (one lookup and one short copy each) costs more than the patch
copy itself, so the reader caches whole decoded volumes instead (one lookup, one copy per patch,
as from arrays in RAM) and falls back to chunks for good once one of its volumes was evicted
(the cache holds more than this reader's cohort, e.g. shared with another reader).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from radiobject.ml.cache.base import Cache

__all__ = [
    "ADMIT_WHEN_FULL",
    "BYPASS_BELOW",
    "PROBE_EVERY",
    "PROBE_MAX",
    "WHOLE_VOLUMES_UP_TO",
    "CacheUse",
    "ChunkSource",
    "chunk_key_prefix",
    "read_chunked",
    "read_whole",
    "whole_key",
]

#: Probability that a missed chunk is stored once the cache is nearly full.
ADMIT_WHEN_FULL = 0.25

Region = tuple[slice, ...]


class ChunkSource(Protocol):
    """What :func:`read_chunked` needs of a volume (``radiobject.model.volume.Volume`` fits)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def chunks(self) -> tuple[int, ...]: ...

    def read(self, region: Region, out: np.ndarray | None = None) -> np.ndarray: ...


def chunk_key_prefix(volume_key: str, chunks: Sequence[int]) -> str:
    """Prefix of chunk keys of one volume: its ``cache_key`` (with version) + the chunk shape."""
    return f"{volume_key}|chunk{'x'.join(str(int(c)) for c in chunks[:3])}:"


#: A reader caches whole volumes while its decoded cohort is at most this share of the budget.
WHOLE_VOLUMES_UP_TO = 1.0


def whole_key(volume_key: str) -> str:
    """Key of a whole decoded volume: its ``cache_key`` (with version) + ``"|volume"``."""
    return f"{volume_key}|volume"


def read_whole(volume: ChunkSource, cache: Cache, key: str, region: Region, out: np.ndarray) -> str:
    """Fill ``out`` with ``region`` (the volume's slices, clipped) of the whole decoded volume at ``key``.

    On a miss the whole volume is read (all its chunks, decoded in parallel by the engine) and
    offered to the cache. Returns ``"hit"``, ``"stored"`` (missed, now cached) or ``"dropped"``
    (missed and not kept: larger than the budget, or a cache that stores nothing).
    """
    block = cache.get(key)
    if block is not None:
        np.copyto(out, block[region], casting="unsafe")
        return "hit"
    full = tuple(slice(0, s) for s in volume.shape)
    dtype = getattr(volume, "dtype", None)
    if dtype is None:
        block = volume.read(full)
    else:  # decoded into numpy's own memory: patch copies from it run at in-RAM speed (the
        # engine's buffers measured ~1.4x slower to copy patches from)
        block = volume.read(full, out=np.empty(volume.shape, dtype=dtype))
    cache.put(key, block)
    np.copyto(out, block[region], casting="unsafe")
    return "stored" if key in cache else "dropped"


def _copy(out: np.ndarray, region: Region, block: np.ndarray, block_region: Region) -> None:
    """Copy the overlap of ``block`` (covering ``block_region``) into ``out`` (covering ``region``)."""
    dst, src = [], []
    for r, b in zip(region, block_region, strict=False):
        lo, hi = max(r.start, b.start), min(r.stop, b.stop)
        if hi <= lo:
            return
        dst.append(slice(lo - r.start, hi - r.start))
        src.append(slice(lo - b.start, hi - b.start))
    np.copyto(out[tuple(dst)], block[tuple(src)], casting="unsafe")


class CacheUse:
    """Per-process policy: read through the cache only while it pays off.

    A full cache smaller than the cohort hits about its share of the cohort under random
    sampling; below :data:`BYPASS_BELOW` hits per lookup, assembling a patch from chunks (many
    short copies) costs more than the decode it saves, so reads then go straight to the store
    (as without a cache), except probes that keep measuring the hit rate and keep admitting
    chunks: the first after :data:`PROBE_EVERY` bypassed reads, then at doubling intervals up to
    :data:`PROBE_MAX` while the hit rate stays low (a probe through a full file cache costs about
    three plain reads: lookups, admitted writes, evictions), back to :data:`PROBE_EVERY` once it
    is high again. A cache that is not yet full is always used (it is filling).
    """

    __slots__ = ("every", "hit_rate", "reads", "wait")

    def __init__(self) -> None:
        self.hit_rate, self.reads = 1.0, 0
        self.every = self.wait = PROBE_EVERY

    def use(self, cache: Cache) -> bool:
        """Whether this read should go through ``cache``."""
        self.reads += 1
        if self.hit_rate >= BYPASS_BELOW or not cache.nearly_full():
            return True
        self.wait -= 1
        if self.wait > 0:
            return False
        self.every = min(2 * self.every, PROBE_MAX)  # a probe: the next one comes later
        self.wait = self.every
        return True

    def record(self, hits: int, lookups: int) -> None:
        """Fold one read's hits into the running hit rate (exponential average)."""
        if lookups:
            self.hit_rate = 0.8 * self.hit_rate + 0.2 * hits / lookups
            if self.hit_rate >= BYPASS_BELOW:
                self.every = self.wait = PROBE_EVERY


#: Below this running hit rate a full cache is bypassed (see :class:`CacheUse`).
BYPASS_BELOW = 0.85
#: While bypassing, the first probe comes after this many reads; later ones at doubling intervals ...
PROBE_EVERY = 32
#: ... up to this many reads apart.
PROBE_MAX = 512


def read_chunked(
    volume: ChunkSource,
    cache: Cache,
    prefix: str,
    region: Region,
    out: np.ndarray,
    *,
    rng: random.Random | None = None,
    policy: CacheUse | None = None,
) -> np.ndarray:
    """Fill ``out`` with ``region`` (three spatial slices, clipped to the volume) of ``volume``.

    ``out``: shape ``(*region_shape, *trailing)`` where ``trailing`` are the volume's axes after
    the third (read whole), any dtype (values are cast). Returns ``out``.
    """
    shape, cs = volume.shape[:3], volume.chunks[:3]
    trailing = (slice(None),) * (len(volume.shape) - 3)
    if any(r.stop <= r.start for r in region):
        return out
    ranges = [range(r.start // c, (r.stop - 1) // c + 1) for r, c in zip(region, cs, strict=True)]
    get = cache.get
    hits: list[tuple[tuple[int, ...], np.ndarray]] = []
    missing: list[tuple[tuple[int, ...], str]] = []
    for idx in itertools.product(*ranges):
        key = f"{prefix}{idx[0]}.{idx[1]}.{idx[2]}"
        block = get(key)
        if block is None:
            missing.append((idx, key))
        else:
            hits.append((idx, block))

    def chunk_region(idx: tuple[int, ...]) -> Region:
        return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, cs, shape, strict=True))

    if policy is not None:
        policy.record(len(hits), len(hits) + len(missing))
    box: Region | None = None
    if missing:
        lo = [min(m[0][a] for m in missing) for a in range(3)]
        hi = [max(m[0][a] for m in missing) for a in range(3)]
        box = tuple(slice(lo[a] * cs[a], min((hi[a] + 1) * cs[a], shape[a])) for a in range(3))
        data = volume.read(box + trailing)
        _copy(out, region, data, box)
        admit = 1.0 if not cache.nearly_full() else ADMIT_WHEN_FULL
        draw = (rng or random).random
        for idx, key in missing:
            if admit >= 1.0 or draw() < admit:
                cr = chunk_region(idx)
                cache.put(
                    key,
                    np.array(
                        data[tuple(slice(c.start - b.start, c.stop - b.start) for c, b in zip(cr, box, strict=True))]
                    ),
                )
    for idx, block in hits:
        cr = chunk_region(idx)
        if box is not None and all(b.start <= c.start and c.stop <= b.stop for c, b in zip(cr, box, strict=True)):
            continue  # already copied from the box
        _copy(out, region, block, cr)
    return out
