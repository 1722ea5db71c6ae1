"""``scattered_points``: voxel values at arbitrary points, reading each needed chunk once, in parallel.

Like CloudVolume's ``scattered_points``: points are grouped by the storage chunk that holds them,
each chunk is read once (through a cache when given, keyed by the chunk's region), chunks are read
concurrently by threads (tensorstore, TileDB and blosc release the GIL), and values are gathered
in the input order. Long fetches (at least :data:`PROGRESS_MIN_CHUNKS` chunks) show a tqdm
progress bar on a terminal; it stays off when stderr is not a terminal (logs, CI, pipes).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from radiobject.ml.cache import Cache, NoCache, cache_key
from radiobject.model.volume import Volume

__all__ = ["PROGRESS_MIN_CHUNKS", "scattered_points", "chunks_of_points"]

#: A fetch of at least this many chunks shows a progress bar (``progress=None``, on a terminal).
PROGRESS_MIN_CHUNKS = 64


def _progress_bar(total: int, progress: bool | None, desc: str) -> Any:
    """A tqdm bar: ``None`` = only on a terminal and for long fetches, ``True`` = always,
    ``False`` = never (a disabled bar is a no-op)."""
    from tqdm import tqdm

    if progress is None:
        stream = sys.stderr
        show = total >= PROGRESS_MIN_CHUNKS and bool(getattr(stream, "isatty", lambda: False)())
    else:
        show = bool(progress)
    return tqdm(total=total, unit="chunk", desc=desc, disable=not show, leave=False, file=sys.stderr)


def chunks_of_points(points: np.ndarray, chunks: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct chunk grid coordinates ``(k, 3)`` and, per point, the row of its chunk."""
    grid = points // np.asarray(chunks[: points.shape[1]], dtype=np.int64)
    uniq, inverse = np.unique(grid, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)


def scattered_points(
    volume: Volume,
    points: np.ndarray | Sequence[Sequence[int]],
    *,
    cache: Cache | None = None,
    threads: int = 8,
    key_prefix: tuple[str, str, str] | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Values of ``volume`` at integer voxel coordinates ``points`` (n, 3) -> (n,) (or (n, t) for 4D).

    Args:
        volume: the volume to sample.
        points: integer voxel indices along the first three array axes; out-of-range points raise
            ``IndexError`` naming the volume.
        cache: where chunks are kept (key: ``cache_key(*key_prefix, chunk_region)``).
        threads: chunks read concurrently.
        key_prefix: ``(store_uri, collection, obs_id)`` for cache keys (default: the volume URI).
        progress: a progress bar over the chunk reads: ``None`` (default) on a terminal when at
            least ``PROGRESS_MIN_CHUNKS`` chunks are read, ``True`` always, ``False`` never.
    """
    pts = np.asarray(points, dtype=np.int64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be an (n, 3) integer array, got shape {pts.shape}")
    shape = np.asarray(volume.shape[:3], dtype=np.int64)
    if pts.size and ((pts < 0).any() or (pts >= shape).any()):
        bad = pts[((pts < 0) | (pts >= shape)).any(axis=1)][0]
        raise IndexError(f"point {bad.tolist()} outside volume {volume.uri} of shape {tuple(shape)}")
    trailing = volume.shape[3:]
    out = np.empty((pts.shape[0], *trailing), dtype=volume.dtype)
    if not pts.size:
        return out
    chunks = np.asarray(volume.chunks[:3], dtype=np.int64)
    uniq, inverse = chunks_of_points(pts, chunks)
    cache = cache if cache is not None else NoCache()
    prefix = key_prefix or (volume.uri, "", volume.obs_id or "")

    order = np.argsort(inverse, kind="stable")  # points grouped by chunk
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))

    def read_chunk(k: int) -> None:
        lo = uniq[k] * chunks
        hi = np.minimum(lo + chunks, shape)
        region = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        if isinstance(cache, NoCache):
            block = volume.read(region)
        else:
            key = cache_key(*prefix, region, version=volume.info.version)
            block = cache.get_or_load(key, lambda: volume.read(region))
        mine = order[bounds[k] : bounds[k + 1]]
        local = pts[mine] - lo
        out[mine] = block[local[:, 0], local[:, 1], local[:, 2]]

    with _progress_bar(len(uniq), progress, f"points {volume.obs_id or volume.uri}") as bar:
        if len(uniq) == 1 or threads <= 1:
            for k in range(len(uniq)):
                read_chunk(k)
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=min(threads, len(uniq))) as pool:
                for _ in pool.map(read_chunk, range(len(uniq))):
                    bar.update(1)
    return out
