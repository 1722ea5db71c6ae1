"""Checked array files under a directory, shared by every process using it (:class:`DiskCache`).

Writes go to a private (``0600``, ``O_EXCL``) temporary file in the same directory and are
published with ``os.replace``, so a reader in any process sees a whole file or none; several
processes may fill it at once. Each file carries a header (key digest = store, collection, obs ID,
volume version and chunk; CRC32s), checked before it is used (:mod:`ml.cache._files`). Hits are
memory maps: a read touches only its pages. The reader stores *chunks* (see
:mod:`ml.cache.chunks`), so an entry is small and a patch needs only the chunks it touches.

LRU by last access (``mtime``, bumped at most once per second per entry; ``atime`` is unreliable
under ``relatime``). ``put`` is O(1): a running byte total is kept in the directory, and the
directory is listed only when the total passes the budget, then evicted to 80 % of it.

Each process keeps the maps of the entries it read (a hit then costs a ``stat``, not a new map),
bounded in count (``max_maps``) and in bytes (``max_map_bytes``; by default the budget, at most a
quarter of the memory the process may still use, :func:`~ml.cache.limits.memory_headroom`, measured
again every ``SWEEP_SECONDS``): mapped
pages count in its address space (``RLIMIT_AS``) and its resident memory, so a cache larger than
that memory is never mapped whole. A map the kernel refuses (``ENOMEM``) drops this process's maps
and is tried once more; refused again, the lookup is a miss (the store is read), never an error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from radiobject.ml.cache import _files, limits
from radiobject.ml.cache.base import Cache

__all__ = ["DiskCache"]


class DiskCache(Cache):
    """Raw ``.npy`` files under ``path``, bounded by ``max_bytes``, shared by every process using ``path``."""

    _SUFFIX = _files.SUFFIX

    #: Seconds between sweeps that unmap this process's maps of files evicted by any process.
    SWEEP_SECONDS = 2.0
    #: A hit re-stamps an entry's access time only when it is older than this (seconds).
    TOUCH_SECONDS = 1.0

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int,
        *,
        max_maps: int = 8192,
        max_map_bytes: int | None = None,
    ) -> None:
        self._setup(path, max_bytes, max_maps, max_map_bytes)
        _files.sweep_temps(self.path)  # left by writers killed mid-write (in the creating process only)

    def _setup(self, path: str | os.PathLike[str], max_bytes: int, max_maps: int, max_map_bytes: int | None) -> None:
        if max_bytes < 0:
            raise ValueError(f"{type(self).__name__}: max_bytes must be >= 0, got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.max_maps = int(max_maps)
        #: Bytes of entry files one process keeps mapped (``None``: the budget, at most a quarter of
        #: the memory the process may still use, measured at its first map and every SWEEP_SECONDS).
        self.max_map_bytes = None if max_map_bytes is None else int(max_map_bytes)
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:  # a file in the way, no permission, a read-only disk
            from radiobject.ml.errors import LoaderConfigError

            raise LoaderConfigError(
                f"{type(self).__name__}: cannot use {self.path} as a cache directory ({type(exc).__name__}: {exc})"
            ) from exc
        self.hits = 0
        self.misses = 0
        self._reset_maps()

    def _reset_maps(self) -> None:
        # Per-process open maps: a hit on a mapped file costs a stat, not a new mmap whose pages
        # all fault again (~3 ms for a 96^3 crop of a BraTS volume vs ~0.7 ms mapped).
        self._maps: OrderedDict[str, tuple[np.ndarray, tuple[int, int, int]]] = OrderedDict()
        self._mapped = 0  # bytes of the files in _maps
        self._map_limit: int | None = self.max_map_bytes
        self._maps_lock = threading.Lock()
        self._maps_pid = os.getpid()
        self._last_sweep = time.monotonic()

    def __getstate__(self) -> dict:
        return {
            "path": str(self.path),
            "max_bytes": self.max_bytes,
            "max_maps": self.max_maps,
            "max_map_bytes": self.max_map_bytes,
        }

    def __setstate__(self, state: dict) -> None:
        self._setup(state["path"], state["max_bytes"], state.get("max_maps", 8192), state.get("max_map_bytes"))

    def _file(self, key: str) -> Path:
        return _files.entry_file(self.path, key)

    def get(self, key: str) -> np.ndarray | None:
        """The cached array, memory-mapped read-only, or ``None``.

        A damaged, foreign or mismatched file counts as a miss and is removed (never served).
        """
        file = self._file(key)
        if self._maps_pid != os.getpid():  # forked: fresh lock, keep nothing from the parent
            self._reset_maps()
        try:
            st = os.stat(file)
        except FileNotFoundError:
            self._forget(key)
            self.misses += 1
            return None
        with self._maps_lock:
            held = self._maps.get(key)
            if held is not None and held[1] == _files.identity(st):
                self._maps.move_to_end(key)
                value = held[0]
            else:
                value = None
        fresh = value is None
        if value is None:
            loaded = self._load(file, key)
            if loaded is None:
                self.misses += 1
                return None
            value, st = loaded
            self._remember(key, value, st)
        # an access is recorded on first use in this process, then at most once per TOUCH_SECONDS
        if fresh or time.time() - st.st_mtime > self.TOUCH_SECONDS:
            with contextlib.suppress(OSError):
                _files.touch(file)  # last access, for LRU eviction
        self._sweep()
        self.hits += 1
        return value

    def holds(self, key: str) -> bool:
        """Whether an entry file for ``key`` exists (one ``stat``; not a use, not verified)."""
        return self._file(key).exists()

    def _load(self, file: Path, key: str) -> tuple[np.ndarray, os.stat_result] | None:
        """``_files.load``; a map the kernel refuses (``ENOMEM``: address space or memory) drops this
        process's maps and is tried once more, then counts as a miss."""
        for _ in range(2):
            try:
                return _files.load(file, key)
            except OSError as exc:
                if exc.errno != errno.ENOMEM:
                    raise
                self._drop_maps()
        return None

    def _drop_maps(self) -> None:
        with self._maps_lock:
            self._maps.clear()
            self._mapped = 0

    def _map_budget(self) -> int:
        limit = self._map_limit
        if limit is None:  # measured in each process (workers have limits of their own), again at each sweep
            headroom = limits.memory_headroom()  # what this process has mapped is its own: counted as free
            limit = self.max_bytes if headroom is None else min(self.max_bytes, (headroom + self._mapped) // 4)
            self._map_limit = limit
        return limit

    def _remember(self, key: str, value: np.ndarray, st: os.stat_result) -> None:
        if self.max_maps <= 0:
            return
        budget = self._map_budget()
        with self._maps_lock:
            old = self._maps.pop(key, None)
            if old is not None:
                self._mapped -= old[1][2]
            ident = _files.identity(st)
            self._maps[key] = (value, ident)
            self._mapped += ident[2]
            while self._maps and (len(self._maps) > self.max_maps or self._mapped > budget):
                _, (_, dropped) = self._maps.popitem(last=False)
                self._mapped -= dropped[2]

    def _forget(self, key: str) -> None:
        with self._maps_lock:
            old = self._maps.pop(key, None)
            if old is not None:
                self._mapped -= old[1][2]

    def _sweep(self, force: bool = False) -> None:
        """Drop maps of files that were evicted or replaced, so they do not pin memory."""
        now = time.monotonic()
        if not force and now - self._last_sweep < self.SWEEP_SECONDS:
            return
        self._last_sweep = now
        self._map_limit = self.max_map_bytes  # the default budget is measured again
        with self._maps_lock:
            keys = list(self._maps)
        for key in keys:
            try:
                st = os.stat(self._file(key))
                stale = _files.identity(st) != self._maps[key][1]
            except (FileNotFoundError, KeyError):
                stale = True
            if stale:
                self._forget(key)

    def put(self, key: str, value: np.ndarray) -> None:
        """Write atomically (private temporary file + ``os.replace``); O(1) unless over budget.

        Only when the running byte total passes ``max_bytes`` is the directory listed and evicted
        (least recently used first) down to 80 % of the budget.
        """
        value = np.asarray(value)
        if value.dtype.hasobject:
            raise TypeError(f"{type(self).__name__}: cannot store object arrays (key {key!r})")
        if value.nbytes > self.max_bytes:
            return
        added = _files.publish(self._file(key), key, value)
        if added is None:
            return
        if _files.add_bytes(self.path, added) > self.max_bytes:
            self._evict()

    def nearly_full(self) -> bool:
        """True once the directory has been filled (evictions bring it back to 80 % of the budget)."""
        return _files.total_bytes(self.path) >= (_files.LOW_WATER - 0.05) * self.max_bytes

    def _entries(self) -> Iterator[tuple[float, int, Path]]:
        return _files.entries(self.path)

    def get_or_load(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array, or ``load()`` stored and returned; one loader per key across processes.

        On a miss the caller takes an exclusive lock (one of 64 lock stripes, by key hash) and
        checks again, so when several workers miss the same volume one reads the store and the
        others map its result instead of each downloading it.
        """
        hit = self.get(key)
        if hit is not None:
            return hit
        with self._locked(_files.stripe_lock_name(key)):  # one loader per key across processes
            return super().get_or_load(key, load)

    def _locked(self, name: str = ".lock") -> contextlib.AbstractContextManager[None]:
        return _files.locked(self.path, name)

    def _evict(self) -> None:
        _files.evict_lru(self.path, self.max_bytes)
        self._sweep(force=True)

    @property
    def nbytes(self) -> int:
        """Bytes of entry files in the directory (headers included), all processes together."""
        return sum(size for _, size, _ in self._entries())

    def __len__(self) -> int:
        return sum(1 for _ in self._entries())

    def clear(self) -> None:
        """Delete every entry (other processes' mapped arrays stay valid until unmapped)."""
        _files.remove_all(self.path)
        self._drop_maps()
