"""This process's decoded Zarr chunks for the own read path: an LRU bounded in bytes whose
evicted buffers are decoded into again.

Why recycle: a decoded 32³ float32 chunk is 128 KiB, at glibc's ``mmap`` threshold, so a fresh
buffer per decode costs page faults; a cache that keeps buffers alive defeats the allocator's
reuse. Measured (2026-12-03, quiet 2-core VM, 12 MRI-like volumes, random 96³ patches): a
64 MiB LRU of fresh buffers read 0.90-0.94x as fast as none; see ``benchmarks/zarr_reader.py``.

Safety: an entry is *pinned* while a reader copies from it (:meth:`ChunkPool.pin` /
:meth:`ChunkPool.unpin`); an evicted entry's buffer is reused only once no reader holds it, so a
copy never sees another chunk's bytes.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

import numpy as np

from radiobject._os.forks import ForkSafeLock

__all__ = ["ChunkPool", "Entry"]

#: Spare buffers kept for decoding into (per size).
MAX_SPARE = 8
#: Once the LRU is full, the share of missed chunks stored (see :meth:`ChunkPool.admits`).
ADMIT_WHEN_FULL = 0.25


class Entry:
    """A decoded chunk (``array``, a view of the ``uint8`` buffer ``buf``) and how many readers
    copy from it now."""

    __slots__ = ("array", "buf", "evicted", "pins")

    def __init__(self, array: np.ndarray, buf: np.ndarray) -> None:
        self.array, self.buf, self.pins, self.evicted = array, buf, 1, False


class ChunkPool:
    """The LRU (the budget is given at each insert: it may change while the process runs)."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[Any, ...], Entry] = OrderedDict()
        self._bytes = 0
        self._spare: dict[int, list[np.ndarray]] = {}
        self._lock = ForkSafeLock()

    @property
    def nbytes(self) -> int:
        """Bytes of the chunks held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def buffer(self, nbytes: int) -> np.ndarray:
        """A writable ``uint8`` buffer of ``nbytes`` to decode into (a spare one when there is)."""
        with self._lock:
            spare = self._spare.get(nbytes)
            if spare:
                return spare.pop()
        return np.empty(nbytes, np.uint8)

    def give_back(self, buf: np.ndarray) -> None:
        """A buffer no one reads any more (not in the LRU): kept as a spare."""
        with self._lock:
            self._keep(buf)

    def _keep(self, buf: np.ndarray) -> None:
        spare = self._spare.setdefault(buf.nbytes, [])
        if len(spare) < MAX_SPARE:
            spare.append(buf)

    def admits(self, nbytes: int, budget: int) -> bool:
        """Whether a decoded chunk of ``nbytes`` is worth keeping: always while the LRU has room;
        once it is full, with probability :data:`ADMIT_WHEN_FULL` (under random sampling the hit
        rate of a full cache is about its share of the data whatever it admits, while each
        admission costs a copy into a buffer that is cold in the CPU cache)."""
        if nbytes > budget:
            return False
        return self._bytes + nbytes <= budget or random.random() < ADMIT_WHEN_FULL

    def pin(self, key: tuple[Any, ...]) -> Entry | None:
        """The entry of ``key``, pinned (call :meth:`unpin` after copying), or ``None``."""
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
                entry.pins += 1
            return entry

    def unpin(self, entry: Entry) -> None:
        """Done copying from ``entry``; an evicted entry's buffer becomes a spare."""
        with self._lock:
            entry.pins -= 1
            if entry.evicted and entry.pins == 0:
                self._keep(entry.buf)

    def put(self, key: tuple[Any, ...], array: np.ndarray, buf: np.ndarray, budget: int) -> Entry | None:
        """Stores ``array`` (decoded into ``buf``, a :meth:`buffer`) and returns its entry, pinned
        once for the caller; ``None`` when it does not fit the budget or another thread stored the
        chunk meanwhile (then :meth:`give_back` ``buf`` after use)."""
        if array.nbytes > budget:
            return None
        with self._lock:
            if key in self._items:
                return None
            entry = self._items[key] = Entry(array, buf)
            self._bytes += array.nbytes
            while self._bytes > budget and self._items:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.array.nbytes
                old.evicted = True
                if old.pins == 0:
                    self._keep(old.buf)
            return entry

    def clear(self) -> None:
        """Drops every chunk and spare buffer (after fork: its lock is a ``ForkSafeLock``; in tests)."""
        with self._lock:
            self._items.clear()
            self._spare.clear()
            self._bytes = 0
