"""Caches of decoded arrays, keyed by strings: none, per process, per node (shared memory), on disk.

Every cache returns **read-only** arrays (crop then copy into your batch buffer; ``np.array(x)``
for a writable copy) and refuses values larger than its budget. Keys come from :func:`cache_key`
(``"{store_uri}|{collection}|{obs_id}|{region}"``, plus ``"|{version}"`` when a version is given).

* :class:`NoCache` — nothing is kept (:mod:`ml.cache.base`).
* :class:`InMemoryCache` — one LRU per process, bounded in bytes, thread-safe. Pickling it (spawn
  workers) gives an empty cache: each process keeps its own (:mod:`ml.cache.memory`).
* :class:`DiskCache` — ``.npy`` files (no pickle) under a directory, for remote stores; atomic
  publish, ``mmap`` hits, ``flock``-guarded LRU eviction by ``mtime`` (:mod:`ml.cache.disk`).
* :class:`SharedMemoryCache` — the same files in ``/dev/shm`` (tmpfs): every process maps the same
  pages, so N workers reading a cached volume hold one copy, not N (:mod:`ml.cache.shared`).
* :class:`CacheStrategy` / :func:`make_cache` — pick one by name (:mod:`ml.cache.strategy`).
* :func:`memory_headroom` / :class:`CacheMemoryWarning` — the memory this process may still take
  (address-space limit, memory cgroup, RAM) and the warning of a setting that does not fit it
  (:mod:`ml.cache.limits`).
"""

from __future__ import annotations

from radiobject.ml.cache.base import Cache, NoCache, cache_key
from radiobject.ml.cache.disk import DiskCache
from radiobject.ml.cache.limits import CacheMemoryWarning, memory_headroom
from radiobject.ml.cache.memory import InMemoryCache
from radiobject.ml.cache.shared import SharedMemoryCache, sweep_stale
from radiobject.ml.cache.strategy import CacheStrategy, make_cache

__all__ = [
    "Cache",
    "CacheMemoryWarning",
    "CacheStrategy",
    "DiskCache",
    "InMemoryCache",
    "NoCache",
    "SharedMemoryCache",
    "cache_key",
    "make_cache",
    "memory_headroom",
    "sweep_stale",
]
