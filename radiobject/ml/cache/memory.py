"""A per-process LRU cache of arrays, bounded in bytes (:class:`InMemoryCache`)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from radiobject._os.forks import ForkSafeLock
from radiobject.ml.cache.base import Cache, _readonly

__all__ = ["InMemoryCache"]


class InMemoryCache(Cache):
    """A per-process LRU cache bounded by ``max_bytes`` of array data; thread-safe.

    Pickling it (spawn workers) gives an empty cache: each process keeps its own.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"InMemoryCache: max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = ForkSafeLock()
        self.hits = 0
        self.misses = 0

    def __getstate__(self) -> dict:
        return {"max_bytes": self.max_bytes}  # a new process starts empty: no copy per worker

    def __setstate__(self, state: dict) -> None:
        InMemoryCache.__init__(self, state["max_bytes"])

    def get(self, key: str) -> np.ndarray | None:
        """The cached array, marked most recently used, or ``None``."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def holds(self, key: str) -> bool:
        """Whether ``key`` is held (not a use: the LRU order and the hit counts stay as they are)."""
        return key in self._items

    def put(self, key: str, value: np.ndarray) -> None:
        """Insert (or refresh) ``key``, evicting least recently used entries beyond the budget.

        A view (a crop of a larger array, a memory map) is copied first: kept as it is, it would
        hold its whole base alive, beyond what the budget counts."""
        value = np.asarray(value)
        if value.nbytes > self.max_bytes:
            return
        if not value.flags.owndata:
            value = value.copy()
        value = _readonly(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes

    @property
    def nbytes(self) -> int:
        """Bytes of array data held."""
        return self._bytes

    def nearly_full(self) -> bool:
        """True when at least 95 % of the budget is held."""
        return self._bytes >= 0.95 * self.max_bytes

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
