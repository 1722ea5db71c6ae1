"""Caches of decoded arrays, keyed by strings: none, per process, per node (shared memory), on disk.

Every cache returns **read-only** arrays (crop then copy into your batch buffer; ``np.array(x)``
for a writable copy) and refuses values larger than its budget. Keys come from :func:`cache_key`
(``"{store_uri}|{collection}|{obs_id}|{region}"``).

* :class:`NoCache` — nothing is kept.
* :class:`InMemoryCache` — one LRU per process, bounded in bytes, thread-safe. Pickling it (spawn
  workers) gives an empty cache: each process keeps its own.
* :class:`DiskCache` — ``.npy`` files (no pickle) under a directory, for remote stores. Writes go
  to a unique temporary file in the same directory and are published with ``os.replace``, so a
  reader in any process sees a whole file or none; several processes may fill it at once. Hits
  are ``np.load(mmap_mode="r")``: a patch read touches only its pages. LRU by last access
  (``mtime``, bumped on every hit; ``atime`` is unreliable under ``relatime``); eviction runs
  under an ``flock`` so concurrent evictors do not over-evict.
* :class:`SharedMemoryCache` — the same files in ``/dev/shm`` (tmpfs): file pages *are* RAM and
  every process maps the same pages, so N workers reading a cached volume hold one copy, not N.
  The process that created it removes the directory at exit; pickled copies (workers) share it.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "Cache",
    "CacheStrategy",
    "DiskCache",
    "InMemoryCache",
    "NoCache",
    "SharedMemoryCache",
    "cache_key",
    "make_cache",
]


def cache_key(store_uri: str, collection: str, obs_id: str, region: Sequence[slice] | None = None) -> str:
    """``"{store_uri}|{collection}|{obs_id}|{region}"``; region ``"full"`` or e.g. ``"0:64,0:64,5:69"``.

    ``%`` and ``|`` inside the parts are percent-escaped so distinct inputs give distinct keys.
    """
    def esc(part: str) -> str:
        return str(part).replace("%", "%25").replace("|", "%7C")

    if region is None:
        reg = "full"
    else:
        reg = ",".join(f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}"
                       + ("" if s.step in (None, 1) else f":{s.step}") for s in region)
    return f"{esc(store_uri)}|{esc(collection)}|{esc(obs_id)}|{reg}"


def _readonly(value: np.ndarray) -> np.ndarray:
    view = value.view()
    view.flags.writeable = False
    return view


class Cache:
    """Interface of every cache: ``get`` / ``put`` / ``get_or_load`` on string keys, numpy values."""

    #: Byte budget (0 for :class:`NoCache`).
    max_bytes: int = 0

    def get(self, key: str) -> np.ndarray | None:
        """The cached array (read-only) or ``None``."""
        raise NotImplementedError

    def put(self, key: str, value: np.ndarray) -> None:
        """Store ``value`` under ``key`` (ignored when larger than the budget). Do not modify it after."""
        raise NotImplementedError

    def get_or_load(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array, or ``load()`` stored and returned (read-only either way)."""
        hit = self.get(key)
        if hit is not None:
            return hit
        value = np.asarray(load())
        self.put(key, value)
        return _readonly(value)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    @property
    def nbytes(self) -> int:
        """Bytes currently held (for disk caches: in this cache's directory, all processes)."""
        return 0

    def clear(self) -> None:
        """Drop every entry."""


class NoCache(Cache):
    """Keeps nothing: every ``get_or_load`` calls the loader."""

    def get(self, key: str) -> np.ndarray | None:
        """Always ``None``."""
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        """Does nothing."""


class InMemoryCache(Cache):
    """A per-process LRU cache bounded by ``max_bytes`` of array data; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"InMemoryCache: max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __getstate__(self) -> dict:
        return {"max_bytes": self.max_bytes}  # a new process starts empty: no copy per worker

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_bytes"])

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

    def put(self, key: str, value: np.ndarray) -> None:
        """Insert (or refresh) ``key``, evicting least recently used entries beyond the budget."""
        value = _readonly(np.asarray(value))
        if value.nbytes > self.max_bytes:
            return
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

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
            self._bytes = 0


_LOCK_STRIPES = 64


class DiskCache(Cache):
    """Raw ``.npy`` files under ``path``, bounded by ``max_bytes``, shared by every process using ``path``."""

    _SUFFIX = ".npy"

    #: Seconds between sweeps that unmap this process's maps of files evicted by any process.
    SWEEP_SECONDS = 1.0

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, *, max_maps: int = 32) -> None:
        if max_bytes < 0:
            raise ValueError(f"{type(self).__name__}: max_bytes must be >= 0, got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.max_maps = int(max_maps)
        self.path.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._reset_maps()

    def _reset_maps(self) -> None:
        # Per-process open maps: a hit on a mapped file costs a stat, not a new mmap whose pages
        # all fault again (~3 ms for a 96^3 crop of a BraTS volume vs ~0.7 ms mapped).
        self._maps: OrderedDict[str, tuple[np.ndarray, tuple[int, int, int]]] = OrderedDict()
        self._maps_lock = threading.Lock()
        self._maps_pid = os.getpid()
        self._last_sweep = time.monotonic()

    def __getstate__(self) -> dict:
        return {"path": str(self.path), "max_bytes": self.max_bytes, "max_maps": self.max_maps}

    def __setstate__(self, state: dict) -> None:
        DiskCache.__init__(self, state["path"], state["max_bytes"], max_maps=state.get("max_maps", 32))

    def _file(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.path / digest[:2] / (digest + self._SUFFIX)

    def get(self, key: str) -> np.ndarray | None:
        """The cached array, memory-mapped read-only, or ``None`` (a damaged file counts as a miss)."""
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
            if held is not None and held[1] == _identity(st):
                self._maps.move_to_end(key)
                value = held[0]
            else:
                value = None
        if value is None:
            try:
                value = np.load(file, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                self.misses += 1
                return None
            except (ValueError, OSError):  # truncated / foreign file: drop it, treat as a miss
                with contextlib.suppress(OSError):
                    file.unlink()
                self.misses += 1
                return None
            self._remember(key, value, st)
        with contextlib.suppress(OSError):
            _touch(file)  # last access, for LRU eviction
        self._sweep()
        self.hits += 1
        return value

    def _remember(self, key: str, value: np.ndarray, st: os.stat_result) -> None:
        if self.max_maps <= 0:
            return
        with self._maps_lock:
            self._maps[key] = (value, _identity(st))
            self._maps.move_to_end(key)
            while len(self._maps) > self.max_maps:
                self._maps.popitem(last=False)

    def _forget(self, key: str) -> None:
        with self._maps_lock:
            self._maps.pop(key, None)

    def _sweep(self, force: bool = False) -> None:
        """Drop maps of files that were evicted or replaced, so they do not pin memory."""
        now = time.monotonic()
        if not force and now - self._last_sweep < self.SWEEP_SECONDS:
            return
        self._last_sweep = now
        with self._maps_lock:
            keys = list(self._maps)
        for key in keys:
            try:
                st = os.stat(self._file(key))
                stale = _identity(st) != self._maps[key][1]
            except (FileNotFoundError, KeyError):
                stale = True
            if stale:
                self._forget(key)

    def put(self, key: str, value: np.ndarray) -> None:
        """Write atomically (unique temporary file + ``os.replace``), then evict beyond the budget."""
        value = np.asarray(value)
        if value.dtype.hasobject:
            raise TypeError(f"{type(self).__name__}: cannot store object arrays (key {key!r})")
        if value.nbytes > self.max_bytes:
            return
        file = self._file(key)
        try:
            file.parent.mkdir(exist_ok=True)
        except FileNotFoundError:  # the cache directory was removed (closed): keep nothing
            return
        tmp = file.with_name(f".{file.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(value), allow_pickle=False)
            _touch(tmp)
            os.replace(tmp, file)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._evict()

    def _entries(self) -> Iterator[tuple[float, int, Path]]:
        for sub in os.scandir(self.path):
            if not sub.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(sub.path):
                    if entry.name.endswith(self._SUFFIX) and not entry.name.startswith("."):
                        with contextlib.suppress(FileNotFoundError):
                            st = entry.stat(follow_symlinks=False)
                            yield st.st_mtime, st.st_size, Path(entry.path)

    def get_or_load(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array, or ``load()`` stored and returned; one loader per key across processes.

        On a miss the caller takes an exclusive lock (one of 64 lock stripes, by key hash) and
        checks again, so when several workers miss the same volume one reads the store and the
        others map its result instead of each downloading it.
        """
        hit = self.get(key)
        if hit is not None:
            return hit
        stripe = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % _LOCK_STRIPES
        with self._locked(f".lock-{stripe:02d}"):
            hit = self.get(key)
            if hit is not None:
                return hit
            value = np.asarray(load())
            self.put(key, value)
        return _readonly(value)

    @contextlib.contextmanager
    def _locked(self, name: str = ".lock") -> Iterator[None]:
        try:
            fh = open(self.path / name, "a+b")  # noqa: SIM115 - closed below
        except FileNotFoundError:  # directory removed (closed cache): nothing left to protect
            yield
            return
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _evict(self) -> None:
        with self._locked():
            entries = sorted(self._entries())
            total = sum(size for _, size, _ in entries)
            for _, size, file in entries:  # oldest access first
                if total <= self.max_bytes:
                    break
                with contextlib.suppress(FileNotFoundError):
                    file.unlink()
                total -= size
        self._sweep(force=True)

    @property
    def nbytes(self) -> int:
        """Bytes of ``.npy`` files in the directory (headers included), all processes together."""
        return sum(size for _, size, _ in self._entries())

    def __len__(self) -> int:
        return sum(1 for _ in self._entries())

    def clear(self) -> None:
        """Delete every entry (other processes' mapped arrays stay valid until unmapped)."""
        with self._locked():
            for _, _, file in list(self._entries()):
                with contextlib.suppress(FileNotFoundError):
                    file.unlink()
        with self._maps_lock:
            self._maps.clear()


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    """A published file is never modified in place, only replaced: inode, device and size identify it."""
    return st.st_ino, st.st_dev, st.st_size


def _touch(file: Path) -> None:
    """Set mtime to now with ns precision (the kernel's own stamp is jiffy-coarse: LRU ties)."""
    now = time.time_ns()
    os.utime(file, ns=(now, now))


_SHM_ROOT = Path("/dev/shm")


class SharedMemoryCache(DiskCache):
    """One cache per node in shared memory (tmpfs), mapped by every worker process; not a copy per worker.

    Args:
        max_bytes: byte budget for the whole node (all processes together).
        name: directory name under ``root``; processes using the same name share the cache. A
            fresh unique name when omitted (then only this object and its pickled copies share it).
        root: a tmpfs mount, ``/dev/shm`` by default (falls back to the temp dir if absent).
        cleanup: remove the directory when the creating process exits (default: only for a
            generated name).
    """

    def __init__(
        self,
        max_bytes: int,
        name: str | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        cleanup: bool | None = None,
    ) -> None:
        base = Path(root) if root is not None else (_SHM_ROOT if _SHM_ROOT.is_dir() else Path(tempfile.gettempdir()))
        generated = name is None
        self.name = name or f"radiobject-cache-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        if "/" in self.name or self.name in ("", ".", ".."):
            raise ValueError(f"SharedMemoryCache: invalid name {self.name!r}")
        free = shutil.disk_usage(base).free if base.is_dir() else 0
        if max_bytes > free:
            raise ValueError(
                f"SharedMemoryCache: max_bytes {max_bytes} exceeds the {free} bytes free in {base} "
                "(in Docker raise --shm-size)"
            )
        super().__init__(base / self.name, max_bytes)
        self._owner = os.getpid()
        if generated if cleanup is None else cleanup:
            atexit.register(_remove_if_owner, str(self.path), self._owner)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "name": self.name, "owner": self._owner}

    def __setstate__(self, state: dict) -> None:
        DiskCache.__init__(self, state["path"], state["max_bytes"], max_maps=state.get("max_maps", 32))
        self.name, self._owner = state["name"], state["owner"]

    def close(self) -> None:
        """Remove the shared directory now (only from the creating process)."""
        with self._maps_lock:
            self._maps.clear()
        _remove_if_owner(str(self.path), self._owner)


def _remove_if_owner(path: str, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


class CacheStrategy(str, enum.Enum):
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
