"""Local Zarr v3 reads without tensorstore: the shard index, then only the inner chunks a read touches.

Why our own read path (docs/benchmarks.md, *Own Zarr read path*): a random 96³ patch of a sharded
``blosc`` array cost tensorstore 13.9-14.4 ms of CPU, about twice the decode itself; this path
does the same work in ~8 ms. It reads exactly what radiobject writes (``sharding_indexed`` with
its index at the end as ``bytes`` + ``crc32c``; inner chunks ``bytes`` [+ ``blosc``] + ``crc32c``)
on local disks; any other layout (``zstd``, ``gzip``: their frames are tensorstore's to decode),
and every remote store, stays with tensorstore. Writes always go through tensorstore.

Per read: the shard file is opened and ``fstat``-ed; its index (read once per file identity:
device, inode, size, mtime, then cached) must pass its crc32c; each touched inner chunk is read
with ``pread``, its crc32c checked, decoded (numcodecs' blosc, GIL released; the blosc header's
sizes are checked first) and copied into the output. Reads touching many chunks are cut and
decoded on a small per-process thread pool (``threads``); a read started with
:meth:`PlainReader.start` runs on that pool as one task. Decoded chunks are kept in one
per-process LRU bounded in bytes (``pool_bytes``, the same budget as tensorstore's pool).

Stricter than tensorstore: in a sealed array (``sealed``: every chunk was written, fill-value
chunks too) a missing shard file or a missing index entry is a ``CorruptDataError``, never fill
values; a checksum mismatch, a short read or a chunk that decodes to the wrong size names the
shard file and the inner chunk.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import google_crc32c
import numpy as np
from numcodecs import blosc as _blosc

from radiobject._os.files import open_regular
from radiobject._os.forks import ForkSafeLock
from radiobject.errors import CorruptDataError, StoreError
from radiobject.storage._chunk_pool import ChunkPool
from radiobject.storage._zarr_layout import PlainLayout, plain_layout
from radiobject.storage.base import ArrayHandle, ArraySpec, Region, region_shape

__all__ = ["PlainLayout", "PlainReader", "PlainZarrArray", "plain_layout"]

_MISSING = (1 << 64) - 1
#: CRC-32C of any message followed by its own CRC-32C (little-endian): the codec's check value.
_CRC32C_RESIDUE = 0x48674BC7
#: A blosc 1 header: flags (byte 2), uncompressed size (4), compressed size (12).
_BLOSC_HEADER = struct.Struct("<2xB1xI4xI")
#: The blosc flag of a chunk stored uncompressed after its 16-byte header.
_BLOSC_MEMCPYED = 0x02
#: A read is cut into pieces for the pool only from this many inner chunks per piece. Measured
#: (benchmarks/zarr_reader.py, 2026-12-03, quiet 2-core VM): a 96³ patch (64 chunks) in two
#: pieces took 3.1-3.6 ms against 2.5-2.8 ms in one (the GIL: crc32c, the copies), a whole
#: 240x240x155 volume (320 chunks) 19-22 ms against 21-24 ms at 1.4x the CPU; so only large
#: reads are cut, and patch reads stay on the calling thread (worker processes scale instead).
MIN_CHUNKS_PER_PIECE = 128


_CHUNKS = ChunkPool()
_LOCAL = threading.local()


def _scratch(nbytes: int) -> np.ndarray:
    """This thread's decode buffer of ``nbytes`` (reused: hot in the CPU cache)."""
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.nbytes != nbytes:
        buf = _LOCAL.buf = np.empty(nbytes, np.uint8)
    return buf


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = ForkSafeLock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """The decode pool of this process (re-created after fork: threads do not survive it)."""
    key = (os.getpid(), threads)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="radiobject-zarr")
        return pool


def _after_fork_in_child() -> None:  # after radiobject._os.forks renewed the locks (imported first)
    _POOLS.clear()
    _CHUNKS.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)

#: a shard index: the inner chunks' offsets and sizes (in C order of the chunk grid).
_Index = tuple[tuple[int, ...], tuple[int, ...]]
# one piece of work: a shard's grid position and its touched chunks (position in the shard, chunk
# grid position, source slices in the chunk, destination slices in the output)
_Job = tuple[tuple[int, ...], list[tuple[int, tuple[int, ...], tuple[slice, ...], tuple[slice, ...]]]]


class PlainReader:
    """Reads regions of one local Zarr v3 array of :class:`PlainLayout` (see the module doc).

    ``root``: the array's folder; ``uri``: its name in errors; ``sealed``: every chunk was written
    (missing data is damage); ``threads`` / ``pool_bytes``: read when a read starts (the decode
    threads and the decoded-chunk budget of this process).
    """

    def __init__(
        self,
        root: str,
        uri: str,
        layout: PlainLayout,
        sealed: bool,
        threads: Callable[[], int],
        pool_bytes: Callable[[], int],
    ) -> None:
        self.root, self.uri, self.layout, self.sealed = root, uri, layout, sealed
        self._threads, self._pool_bytes = threads, pool_bytes
        self._indexes: dict[tuple[int, ...], tuple[tuple[int, ...], _Index]] = {}
        self._n = math.prod(layout.per_shard)
        self._chunk_bytes = math.prod(layout.chunk) * layout.dtype.itemsize

    # ------------------------------------------------------------------ planning
    def _jobs(self, region: Region) -> list[_Job]:
        lay = self.layout
        per = lay.per_shard
        axes = []
        for i, (r, c, p) in enumerate(zip(region, lay.chunk, per, strict=True)):
            stride = math.prod(per[i + 1 :])
            pieces = []
            for k in range(r.start // c, (r.stop - 1) // c + 1):
                a, b = max(r.start, k * c), min(r.stop, (k + 1) * c)
                # (shard position, contribution to the chunk's place in its shard, grid position,
                # source slice in the chunk, destination slice in the output) along this axis
                pieces.append(
                    (k // p, (k % p) * stride, k, slice(a - k * c, b - k * c), slice(a - r.start, b - r.start))
                )
            axes.append(pieces)
        shards: dict[tuple[int, ...], list[Any]] = {}
        for combo in itertools.product(*axes):
            shard, local, pos, src, dst = zip(*combo, strict=True)
            items = shards.get(shard)
            if items is None:
                items = shards[shard] = []
            items.append((sum(local), pos, src, dst))
        return list(shards.items())

    # ------------------------------------------------------------------ reads
    def read(self, region: Region, out: np.ndarray) -> np.ndarray:
        """Fills ``out`` (the region's shape, the array's dtype) with ``region``, on the pool when
        the read touches many chunks."""
        jobs = self._jobs(region) if all(r.stop > r.start for r in region) else []
        count = sum(len(j[1]) for j in jobs)
        parts = min(max(1, self._threads()), count // MIN_CHUNKS_PER_PIECE)
        if parts <= 1:
            for job in jobs:
                self._run(job, out)
            return out
        flat = [(shard, item) for shard, items in jobs for item in items]
        pieces: list[list[_Job]] = [[] for _ in range(parts)]
        for k in range(parts):
            grouped: dict[tuple[int, ...], list[Any]] = {}
            for shard, item in flat[k * len(flat) // parts : (k + 1) * len(flat) // parts]:
                grouped.setdefault(shard, []).append(item)
            pieces[k] = list(grouped.items())
        pool = _pool(max(1, self._threads()))
        futures = [pool.submit(self._run_all, piece, out) for piece in pieces[1:]]
        try:
            self._run_all(pieces[0], out)
        finally:
            errors = [f.exception() for f in futures]
        for exc in errors:
            if exc is not None:
                raise exc
        return out

    def start(self, region: Region) -> Future[np.ndarray]:
        """The read of ``region`` into a new array, as one task on the pool (never waits on it)."""
        out = np.empty(region_shape(region), dtype=self.layout.dtype)
        jobs = self._jobs(region) if all(r.stop > r.start for r in region) else []

        def run() -> np.ndarray:
            self._run_all(jobs, out)
            return out

        return _pool(max(1, self._threads())).submit(run)

    def _run_all(self, jobs: list[_Job], out: np.ndarray) -> None:
        for job in jobs:
            self._run(job, out)

    def _run(self, job: _Job, out: np.ndarray) -> None:
        shard, items = job
        rel = "/".join(["c", *map(str, shard)]) if self.layout.separator == "/" else "c." + ".".join(map(str, shard))
        path = os.path.join(self.root, *rel.split("/"))
        try:
            fd, st = open_regular(
                path, lambda reason: CorruptDataError(self.uri, f"damaged chunk data: {reason}", part=rel)
            )
        except FileNotFoundError:
            if self.sealed:
                raise CorruptDataError(self.uri, "a shard file of the array is missing", part=rel) from None
            for _, _, _, dst in items:
                out[dst] = 0
            return
        except OSError as exc:
            raise StoreError(self.uri, f"cannot read {rel}: {exc}") from None
        try:
            self._fill(fd, st, shard, rel, items, out)
        except OSError as exc:  # an I/O error mid-read: typed, named
            raise StoreError(self.uri, f"cannot read {rel}: {exc}") from None
        finally:
            os.close(fd)

    def _fill(
        self, fd: int, st: os.stat_result, shard: tuple[int, ...], rel: str, items: list[Any], out: np.ndarray
    ) -> None:
        """The touched chunks of one open shard file (``st``: its ``fstat``) into ``out`` (from the LRU where held)."""
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        offsets, sizes = self._index(fd, ident, shard, rel)
        budget = self._pool_bytes()
        end = st.st_size - (16 * self._n + 4)  # where the chunks' data ends (the index follows)
        for local, pos, src, dst in items:
            key = (ident, local)
            entry = _CHUNKS.pin(key) if _CHUNKS.nbytes else None
            if entry is not None:
                try:
                    out[dst] = entry.array[src]
                finally:
                    _CHUNKS.unpin(entry)
                continue
            chunk = self._chunk(fd, offsets[local], sizes[local], end, rel, pos)
            if chunk is None:
                out[dst] = 0
                continue
            out[dst] = chunk[src]
            if _CHUNKS.admits(self._chunk_bytes, budget):
                buf = _CHUNKS.buffer(self._chunk_bytes)
                buf[:] = chunk.reshape(-1).view(np.uint8)
                kept = _CHUNKS.put(key, buf.view(chunk.dtype).reshape(chunk.shape), buf, budget)
                if kept is None:
                    _CHUNKS.give_back(buf)
                else:
                    _CHUNKS.unpin(kept)

    def _index(self, fd: int, ident: tuple[int, ...], shard: tuple[int, ...], rel: str) -> _Index:
        cached = self._indexes.get(shard)
        if cached is not None and cached[0] == ident:
            return cached[1]
        size = 16 * self._n + 4
        if ident[2] < size:
            raise CorruptDataError(self.uri, f"shard is {ident[2]} bytes, shorter than its {size}-byte index", part=rel)
        raw = os.pread(fd, size, ident[2] - size)
        if len(raw) != size or google_crc32c.value(raw[:-4]) != struct.unpack("<I", raw[-4:])[0]:
            raise CorruptDataError(self.uri, "damaged chunk data: the shard index fails its crc32c", part=rel)
        pairs = struct.unpack(f"<{2 * self._n}Q", raw[:-4])
        entry = (pairs[0::2], pairs[1::2])
        self._indexes[shard] = (ident, entry)
        return entry

    def _chunk(self, fd: int, offset: int, nbytes: int, end: int, rel: str, pos: tuple[int, ...]) -> np.ndarray | None:
        """Inner chunk ``pos`` (stored at ``offset``, ``nbytes`` long; ``end``: where the shard's
        chunk data ends), decoded after its checks: a read-only view of this thread's scratch
        buffer or of the bytes read; ``None`` for a chunk not stored in an unsealed array (the
        fill value)."""
        if offset == _MISSING and nbytes == _MISSING:
            if self.sealed:
                raise self._damaged(rel, pos, "missing from the shard index")
            return None
        if offset + nbytes > end or nbytes < (4 if self.layout.crc else 0):
            raise self._damaged(rel, pos, "points past the shard's data")
        raw = os.pread(fd, nbytes, offset)
        if len(raw) != nbytes:
            raise self._damaged(rel, pos, f"read {len(raw)} of {nbytes} bytes")
        size = nbytes
        if self.layout.crc:  # the CRC of data + its little-endian CRC is a constant: no copy of the data
            size -= 4
            if google_crc32c.value(raw) != _CRC32C_RESIDUE:
                raise self._damaged(rel, pos, "crc32c mismatch")
        lay = self.layout
        if lay.compressor == "blosc":
            # the blosc header (flags at 2, nbytes at 4, cbytes at 12) is checked before anything is
            # decoded; blosc reads cbytes bytes, so the trailing checksum is never taken for data
            flags, declared, cbytes = _BLOSC_HEADER.unpack_from(raw) if size >= 16 else (0, -1, -1)
            if declared != self._chunk_bytes or cbytes != size:
                raise self._damaged(rel, pos, f"cannot decode (the blosc header declares {declared} bytes in {cbytes})")
            if flags & _BLOSC_MEMCPYED and cbytes == declared + 16:  # stored as is: no decode, no copy
                chunk = np.frombuffer(raw, lay.dtype, count=declared // lay.dtype.itemsize, offset=16)
            else:
                buf = _scratch(self._chunk_bytes)  # decoded in this thread's buffer: hot in its CPU cache
                try:
                    _blosc.decompress(raw, buf)
                except (RuntimeError, ValueError, TypeError) as exc:
                    raise self._damaged(rel, pos, f"cannot decode ({exc})") from None
                chunk = buf.view(lay.dtype)
        elif size == self._chunk_bytes:
            chunk = np.frombuffer(raw, lay.dtype, count=size // lay.dtype.itemsize)
        else:
            raise self._damaged(rel, pos, f"cannot decode ({size} bytes, not {self._chunk_bytes})")
        chunk = chunk.reshape(lay.chunk)
        if not chunk.dtype.isnative:  # a big-endian host
            chunk = chunk.astype(chunk.dtype.newbyteorder("="))
        return chunk

    def _damaged(self, rel: str, pos: tuple[int, ...], reason: str) -> CorruptDataError:
        where = f"{rel} inner chunk ({', '.join(map(str, pos))})"
        return CorruptDataError(self.uri, f"damaged chunk data: {reason}", part=where)


class PlainZarrArray(ArrayHandle):
    """An open local Zarr v3 array read by :class:`PlainReader`; writes and :meth:`seal` go to the
    tensorstore handle ``writer()`` opens (once, on the first write)."""

    async_reads = True

    def __init__(
        self, reader: PlainReader, spec: ArraySpec, attrs: Mapping[str, Any], writer: Callable[[], ArrayHandle]
    ) -> None:
        self._reader, self.spec, self.attrs = reader, spec, attrs
        self._writer = writer
        self._open: ArrayHandle | None = None

    def read(self, region: Region, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty(region_shape(region), dtype=self.dtype)
        return self._reader.read(region, out)

    def read_async(self, region: Region) -> Future[np.ndarray]:
        """The read runs on this process's decode pool; ``result()`` raises what :meth:`read` would."""
        return self._reader.start(region)

    def _handle(self) -> ArrayHandle:
        if self._open is None:
            self._open = self._writer()
        return self._open

    def write(self, region: Region, data: np.ndarray) -> None:
        self._handle().write(region, data)

    def seal(self) -> str:
        handle = self._handle()
        checksum = handle.seal()
        self.attrs = handle.attrs
        return checksum
