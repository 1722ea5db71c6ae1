"""Choosing a cache by name: :class:`CacheStrategy` and :func:`make_cache`."""

from __future__ import annotations

import enum
import os

from radiobject.ml.cache.base import Cache, NoCache
from radiobject.ml.cache.disk import DiskCache
from radiobject.ml.cache.memory import InMemoryCache
from radiobject.ml.cache.shared import SharedMemoryCache

__all__ = ["CacheStrategy", "make_cache"]


class CacheStrategy(enum.StrEnum):
    """Which cache a loader uses."""

    NONE = "none"
    IN_MEMORY = "in_memory"
    SHARED_MEMORY = "shared_memory"
    DISK = "disk"


def make_cache(
    strategy: CacheStrategy | str,
    *,
    max_bytes: int = 2 << 30,
    path: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> Cache:
    """Build the cache for ``strategy`` (an enum member or its value, e.g. ``"shared_memory"``).

    ``path`` is required for ``DISK``; ``name`` optionally names a ``SHARED_MEMORY`` cache.
    Create it in the main process before the DataLoader starts, so workers share disk / shm ones.
    """
    strategy = CacheStrategy(strategy)
    if strategy is CacheStrategy.NONE:
        return NoCache()
    if strategy is CacheStrategy.IN_MEMORY:
        return InMemoryCache(max_bytes)
    if strategy is CacheStrategy.SHARED_MEMORY:
        return SharedMemoryCache(max_bytes, name)
    if path is None:
        raise ValueError("make_cache: CacheStrategy.DISK needs path=")
    return DiskCache(path, max_bytes)
