"""Zarr v3 arrays, sharded: written through tensorstore (compiled, GIL-free I/O), read locally by
our own shard reader (``radiobject.storage._zarr_plain``) and remotely through tensorstore.

One shard per volume (up to ``MAX_SHARD_VOXELS``) keeps object counts low on S3; the small inner
chunks keep unaligned patch reads cheap. The output is plain Zarr v3: zarr-python, napari and
neuroglancer read it.

Integrity: every inner chunk and every shard index ends with a ``crc32c`` (checked on each read,
by tensorstore and by zarr-python alike); every chunk is stored, also when it equals the fill
value, and the array's integrity record (``radiobject.storage.integrity``) lists every shard with
its size, checked on open: damaged or missing data is a ``CorruptDataError``, never zeros.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import tensorstore as ts

from radiobject.errors import CorruptDataError, StoreError, StoreNotFoundError
from radiobject.storage import checksums, files, integrity
from radiobject.storage._zarr_meta import DIMENSION_NAMES, codec_chain, spec_from_metadata
from radiobject.storage._zarr_plain import PlainReader, PlainZarrArray, plain_layout
from radiobject.storage._zarr_read import ZarrRead, cores, read_error, split_region
from radiobject.storage.base import (
    ArrayHandle,
    ArraySpec,
    Backend,
    ReadFuture,
    Region,
    default_shards,
    region_shape,
)
from radiobject.storage.faults import remote_errors, remote_failure
from radiobject.storage.options import StorageOptions, is_remote, strip_file_scheme


def _pool_setting(default: int) -> int:
    raw = os.environ.get("RADIOBJECT_CHUNK_CACHE_BYTES", "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"RADIOBJECT_CHUNK_CACHE_BYTES must be a number of bytes, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"RADIOBJECT_CHUNK_CACHE_BYTES must be >= 0, got {value}")
    return value


#: Bytes of decoded chunks (and shard indexes) each process keeps: tensorstore's LRU cache pool,
#: one per process, shared by every array it opens. ``RADIOBJECT_CHUNK_CACHE_BYTES`` (read at
#: import, so worker processes inherit it) sets it; 64 MiB by default.
CHUNK_CACHE_BYTES = _pool_setting(64 << 20)


#: Local arrays are read by ``radiobject.storage._zarr_plain`` (the shard index, then only the
#: touched inner chunks; ~1.7x less CPU per patch than tensorstore) unless
#: ``RADIOBJECT_ZARR_READS=tensorstore`` (read at import); writes and remote reads use tensorstore.
PLAIN_READS = os.environ.get("RADIOBJECT_ZARR_READS", "plain").strip().lower() != "tensorstore"


def _decode_threads() -> int:
    return DECODE_THREADS or cores()


def kvstore_spec(uri: str, storage: StorageOptions) -> dict[str, Any]:
    """The tensorstore key-value store spec for a local path or an ``s3://bucket/key`` URI."""
    if not is_remote(uri):
        return {"driver": "file", "path": os.path.abspath(strip_file_scheme(uri))}
    scheme, rest = uri.split("://", 1)
    if scheme != "s3":
        raise StoreError(uri, f"unsupported URI scheme {scheme!r} (use a local path or s3://)")
    bucket, _, path = rest.partition("/")
    return storage.tensorstore_s3_spec(bucket, path.rstrip("/") + "/")


_ts_state = {"used": False, "forked_after_use": False}


def _after_fork_in_child() -> None:
    # tensorstore aborts a forked child that touches it once the parent has used it (its thread
    # pools do not survive fork); such children read through zarr-python, which resets itself.
    if _ts_state["used"]:
        _ts_state["forked_after_use"] = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def tensorstore_usable() -> bool:
    """False in a process forked from one that had used tensorstore."""
    return not _ts_state["forked_after_use"]


def tensorstore_used() -> bool:
    """True once this process (or the one it was forked from) has used tensorstore: a child forked
    from it now would read through zarr-python (start DataLoader workers with forkserver / spawn)."""
    return _ts_state["used"] or _ts_state["forked_after_use"]


#: Threads tensorstore decodes and copies with in this process (``None``: its default, one per core).
#: DataLoader worker processes set their share of the cores (``set_decode_threads``).
DECODE_THREADS: int | None = None


def set_decode_threads(n: int | None) -> None:
    """Decode / copy threads for arrays opened from now on in this process (``None``: one per core)."""
    global DECODE_THREADS
    if n is not None and int(n) < 1:
        raise ValueError(f"decode threads must be >= 1 or None, got {n}")
    DECODE_THREADS = None if n is None else int(n)
    _context.cache_clear()


_reserved_pool = {"bytes": 0}


def reserve_chunk_pool(nbytes: int) -> bool:
    """Grow this process's decoded-chunk pool (tensorstore's LRU, shared by every array opened from
    now on in this process) to at least ``nbytes``; ``True`` when it grew. The ``ml`` in-memory
    cache uses it as its chunk cache when a cohort does not fit the cache (see
    ``radiobject.ml._reader_cache``)."""
    if int(nbytes) <= max(CHUNK_CACHE_BYTES, _reserved_pool["bytes"]):
        return False
    _reserved_pool["bytes"] = int(nbytes)
    _context.cache_clear()
    return True


def chunk_pool_bytes() -> int:
    """Bytes of tensorstore's decoded-chunk pool for arrays opened from now on in this process."""
    return max(CHUNK_CACHE_BYTES, _reserved_pool["bytes"])


@lru_cache(maxsize=4)
def _context(pid: int) -> ts.Context:
    _ts_state["used"] = True
    pool = chunk_pool_bytes()
    spec: dict[str, Any] = {"cache_pool": {"total_bytes_limit": pool}}
    if DECODE_THREADS is not None:
        spec["data_copy_concurrency"] = {"limit": DECODE_THREADS}
    return ts.Context(spec)


def _recheck(uri: str) -> dict[str, Any]:
    """On S3, cached chunks and shard indexes are trusted from the open on (no conditional GET per
    read: a volume's files live under its own version and are not rewritten in place); local
    files are revalidated on every read (a ``stat``), as tensorstore does by default."""
    return {"recheck_cached_data": "open"} if is_remote(uri) else {}


class ZarrArray(ArrayHandle):
    """An open Zarr v3 array (a tensorstore handle)."""

    async_reads = True
    fork_safe = False

    def __init__(
        self,
        store: ts.TensorStore,
        spec: ArraySpec,
        attrs: Mapping[str, Any],
        uri: str = "",
        storage: StorageOptions | None = None,
    ) -> None:
        self._store = store
        self.spec = spec
        self.attrs = attrs
        self._uri, self._storage = uri, storage or StorageOptions()

    def read(self, region: Region, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty(region_shape(region), dtype=self.dtype)
        return self._start(region, out).result()

    def read_async(self, region: Region) -> ReadFuture:
        """Starts the read on tensorstore's thread pool (I/O and decode without the GIL).

        The data lands in a new numpy buffer (patch copies from it run at in-RAM speed); damaged
        chunks raise ``CorruptDataError`` from ``result()``, as :meth:`read` would.
        """
        return self._start(region, np.empty(region_shape(region), dtype=self.dtype))

    def _start(self, region: Region, out: np.ndarray) -> ZarrRead:
        """Issues the read of ``region`` into ``out`` as one sub-read per decode thread, cut on
        inner-chunk boundaries (``radiobject.storage._split``): one shard's chunks are otherwise
        decoded on one core."""
        pieces = split_region(region, self.spec.chunks, DECODE_THREADS or cores())
        target = ts.array(out)
        origin = [r.start for r in region]
        try:
            futures = [
                target[tuple(slice(p.start - o, p.stop - o) for p, o in zip(piece, origin, strict=True))].write(
                    self._store[piece]
                )
                for piece in pieces
            ]
        except ValueError as exc:
            raise read_error(self._uri, exc) from None
        return ZarrRead(futures, out, self._uri)

    def seal(self) -> str:
        return _seal(self._uri, self._storage, self)

    def write(self, region: Region, data: np.ndarray) -> None:
        with remote_errors(self._uri):
            self._store[region].write(self.writable(data)).result()


class ZarrPythonArray(ArrayHandle):
    """The fork-safe fallback: the same array read through zarr-python (used after ``fork``)."""

    def __init__(
        self,
        array: Any,
        spec: ArraySpec,
        attrs: Mapping[str, Any],
        uri: str = "",
        storage: StorageOptions | None = None,
    ) -> None:
        self._array, self.spec, self.attrs = array, spec, attrs
        self._uri, self._storage = uri, storage or StorageOptions()

    def read(self, region: Region, out: np.ndarray | None = None) -> np.ndarray:
        try:
            data = self._array[region]
        except (ValueError, RuntimeError, TypeError) as exc:  # checksum / codec failures of zarr-python
            raise CorruptDataError(self._uri, f"damaged chunk data: {type(exc).__name__}: {exc}") from None
        if out is None:
            return data
        out[...] = data
        return out

    def write(self, region: Region, data: np.ndarray) -> None:
        self._array[region] = self.writable(data)

    def seal(self) -> str:
        return _seal(self._uri, self._storage, self)


def _seal(uri: str, storage: StorageOptions, handle: ArrayHandle) -> str:
    """Marks the array as sealed in ``zarr.json`` (which gets a checksum of its own), then writes the
    integrity record of every file; returns the record's checksum."""
    meta_uri = files.join(uri, "zarr.json")
    meta = json.loads(files.read_bytes(meta_uri, storage))
    meta.setdefault("attributes", {})[integrity.ATTR_KEY] = integrity.record_flag()
    meta = checksums.seal_json(meta, in_attributes=True)
    files.write_bytes_atomic(meta_uri, json.dumps(meta, indent=1).encode(), storage)
    handle.attrs = {k: v for k, v in meta["attributes"].items() if k != checksums.CHECKSUM_KEY}
    record = integrity.build_record(uri, storage, "zarr")
    integrity.write_record(uri, record, storage)
    return str(record[checksums.CHECKSUM_KEY])


class ZarrBackend(Backend):
    """Zarr v3 + sharding through tensorstore."""

    name = "zarr"
    axis_names = DIMENSION_NAMES  # x, y, z, t, c: more axes than names are refused

    def _kv(self, uri: str) -> dict[str, Any]:
        return kvstore_spec(uri, self.storage)

    def create_array(self, uri: str, spec: ArraySpec, attrs: Mapping[str, Any]) -> ArrayHandle:
        shards = spec.shards or default_shards(spec.shape, spec.chunks)
        dtype = self.check_storable(uri, spec.shape, spec.dtype)  # StoreError before anything is deleted
        metadata = {
            "shape": list(spec.shape),
            "data_type": dtype.name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(shards)}},
            "codecs": [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": list(spec.chunks),
                        "codecs": codec_chain(spec.codec, dtype.itemsize, self.checksums),
                        "index_codecs": [
                            {"name": "bytes", "configuration": {"endian": "little"}},
                            {"name": "crc32c"},
                        ],
                    },
                }
            ],
            "fill_value": False if dtype == np.bool_ else 0,
            "dimension_names": list(DIMENSION_NAMES[: len(spec.shape)]),
            "attributes": json.loads(json.dumps(dict(attrs))),
        }
        self.delete_array(uri)
        try:
            store = ts.open(
                {
                    "driver": "zarr3",
                    "kvstore": self._kv(uri),
                    "metadata": metadata,
                    "store_data_equal_to_fill_value": True,
                },
                create=True,
                delete_existing=True,
                context=_context(os.getpid()),
            ).result()
        except ValueError as exc:
            if remote_failure(exc) is not None:
                raise read_error(uri, exc) from exc
            raise StoreError(uri, f"cannot create Zarr array: {exc}") from exc
        return ZarrArray(
            store, ArraySpec(spec.shape, dtype.name, spec.chunks, spec.codec, shards), attrs, uri, self.storage
        )

    def open_array(self, uri: str) -> ArrayHandle:
        meta_uri = files.join(uri, "zarr.json")
        try:
            raw = files.read_bytes(meta_uri, self.storage)
        except FileNotFoundError:
            raise StoreNotFoundError(uri, "no Zarr array here") from None
        meta = checksums.parse_checked_json(raw, meta_uri)
        if not isinstance(meta, dict) or meta.get("node_type") != "array":
            raise StoreNotFoundError(uri, "a Zarr group, not an array")
        attrs = {k: v for k, v in meta.get("attributes", {}).items() if k != checksums.CHECKSUM_KEY}
        sealed = integrity.check_flag(uri, attrs)
        if sealed:  # every recorded shard must be there, whole
            record = integrity.read_record(uri, self.storage)
            integrity.raise_first(
                uri,
                integrity.problems(
                    uri, record, self.storage, hash_file=lambda rel: rel == "zarr.json", known={"zarr.json": raw}
                ),
            )
        try:
            spec = spec_from_metadata(meta)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise CorruptDataError(
                uri, f"unusable Zarr metadata ({type(exc).__name__}: {exc})", part="zarr.json"
            ) from None
        layout = plain_layout(meta) if PLAIN_READS and not is_remote(uri) else None
        if layout is not None:  # our own local read path; writes still through tensorstore
            reader = PlainReader(
                os.path.abspath(strip_file_scheme(uri)), uri, layout, sealed, _decode_threads, chunk_pool_bytes
            )
            return PlainZarrArray(reader, spec, attrs, lambda: self._engine(uri, meta, spec, attrs))
        return self._engine(uri, meta, spec, attrs)

    def _engine(self, uri: str, meta: dict[str, Any], spec: ArraySpec, attrs: dict[str, Any]) -> ArrayHandle:
        """The array opened through tensorstore (zarr-python in a child forked after tensorstore ran)."""
        if not tensorstore_usable():
            return ZarrPythonArray(self._zarr_python(uri), spec, attrs, uri, self.storage)
        try:
            store = ts.open(
                {
                    "driver": "zarr3",
                    "kvstore": self._kv(uri),
                    "metadata": meta,
                    "store_data_equal_to_fill_value": True,
                    **_recheck(uri),
                },
                open=True,
                assume_metadata=True,
                context=_context(os.getpid()),
            ).result()
        except ValueError as exc:
            if remote_failure(exc) is not None:
                raise read_error(uri, exc) from None
            raise CorruptDataError(uri, f"unusable Zarr metadata: {exc}", part="zarr.json") from None
        return ZarrArray(store, spec, attrs, uri, self.storage)

    def _zarr_python(self, uri: str) -> Any:
        import zarr

        if not is_remote(uri):
            return zarr.open_array(store=strip_file_scheme(uri), mode="r+")
        from zarr.storage import FsspecStore

        return zarr.open_array(
            store=FsspecStore(files.remote_fs(self.storage, asynchronous=True), path=uri.split("://", 1)[1]), mode="r+"
        )

    def is_array(self, uri: str) -> bool:
        return files.exists(files.join(uri, "zarr.json"), self.storage)

    def create_group(self, uri: str, attrs: Mapping[str, Any]) -> None:
        # zarr.json carries a checksum in its attributes (files.write_json_atomic)
        body = json.loads(json.dumps(dict(attrs)))
        files.write_json_atomic(
            files.join(uri, "zarr.json"), {"zarr_format": 3, "node_type": "group", "attributes": body}, self.storage
        )

    def group_attrs(self, uri: str) -> dict[str, Any]:
        meta = files.read_json(files.join(uri, "zarr.json"), self.storage)
        if meta.get("node_type") != "group":
            raise FileNotFoundError(f"{uri}: not a Zarr group")
        return {k: v for k, v in meta.get("attributes", {}).items() if k != checksums.CHECKSUM_KEY}

    def delete_array(self, uri: str) -> None:
        files.remove(uri, self.storage)
