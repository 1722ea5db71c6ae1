"""The backend interface: what a storage engine must do for the data model, and nothing more.

A backend stores n-dimensional arrays (one per volume) with JSON attributes. Tables, groups and
small JSON documents live beside them as plain objects (``radiobject.storage.files``), the same for
every backend, so that the catalog is one standard columnar format (Parquet) whatever the engine.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, cast

import numpy as np

from radiobject.errors import StoreError
from radiobject.storage import groups
from radiobject.storage.options import StorageOptions

Region = tuple[slice, ...]

#: Codecs every backend implements. ``blosc-*`` use blosc with byte shuffle; ``zstd`` and
#: ``gzip`` are plain (with a byte-shuffle filter on TileDB). ``blosc-lz4hc`` (the default) is
#: LZ4's high-compression mode: smaller than ``.nii.gz`` on MRI-like data and decoded as fast as
#: ``blosc-lz4`` (see docs/benchmarks.md); TileDB has no HC mode and writes its LZ4 filter.
CODECS: tuple[str, ...] = ("blosc-lz4hc", "blosc-lz4", "blosc-zstd", "zstd", "gzip", "none")


@dataclass(frozen=True)
class Codec:
    """A lossless compression setting: ``name`` from :data:`CODECS`, ``level`` 1-9 (zstd up to 22)."""

    name: str = "blosc-lz4hc"  # chosen by benchmarks/codec_default.py: see docs/benchmarks.md
    level: int = 5
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.name not in CODECS:
            raise ValueError(f"unknown codec {self.name!r}; choose one of {', '.join(CODECS)}")
        if not 0 <= self.level <= 22:
            raise ValueError(f"codec level {self.level} out of range 0-22")

    @classmethod
    def parse(cls, text: str, level: int | None = None) -> Codec:
        """``"zstd"`` / ``"blosc-lz4:5"`` -> Codec (``level`` overrides the suffix)."""
        name, _, lvl = text.partition(":")
        default = 3 if name in ("zstd", "blosc-zstd") else 5
        return cls(name, level if level is not None else int(lvl or default))


#: Voxel dtypes the backends store, in any byte order (arrays hold the native one): booleans,
#: 8-64-bit integers and float16/32/64 -- what a Zarr v3 array written by tensorstore holds (TileDB
#: lacks float16: ``Backend.missing_dtypes``). Refused everywhere (``StoreError``, before anything
#: is written): complex (no Zarr v3 fill value of ours), datetime / timedelta, strings, records,
#: objects, ``longdouble``.
VOXEL_DTYPES: frozenset[np.dtype] = frozenset(
    np.dtype(t)
    for t in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "float16", "float32", "float64")
)  # fmt: skip


def voxel_dtype(
    uri: str, dtype: Any, backend: str, missing: frozenset[np.dtype] = frozenset(), source: str | None = None
) -> np.dtype:
    """The native-byte-order dtype an array of ``backend`` at ``uri`` stores ``dtype`` voxels as.

    ``StoreError`` naming the array (and ``source``, the file the voxels come from, when given),
    the dtype, why it is refused and the backend when it is not one of :data:`VOXEL_DTYPES`, or is
    one of ``missing`` (those the engine has no type for: TileDB's ``float16``). The one dtype
    check of every write path (:meth:`Backend.check_storable`), before anything is created or
    deleted."""
    where = f"{source}: " if source else ""
    try:
        native = np.dtype(dtype).newbyteorder("=")
    except (TypeError, ValueError) as exc:
        raise StoreError(uri, f"{where}{dtype!r} is not a voxel dtype ({exc})") from None
    if native in VOXEL_DTYPES and native not in missing:
        return native
    if native in missing:
        why = f"the {backend} backend has no {native.name} type"
    elif native.kind == "c":
        why = "complex voxels are not stored: write the real and imaginary parts as two volumes"
    elif native.kind not in "biuf":
        why = "they are not numbers"
    else:
        why = "not a supported voxel dtype"
    allowed = ", ".join(sorted(t.name for t in VOXEL_DTYPES - missing))
    raise StoreError(uri, f"{where}{np.dtype(dtype)} voxels cannot be stored ({why}); {backend} arrays hold {allowed}")


@dataclass(frozen=True)
class ArraySpec:
    """Shape, dtype, inner chunk shape, codec and (Zarr only) shard shape of an array."""

    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    codec: Codec = Codec()
    shards: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.chunks) != len(self.shape):
            raise ValueError(f"chunks {self.chunks} do not match the {len(self.shape)}-d shape {self.shape}")
        if any(c < 1 for c in self.chunks) or any(s < 1 for s in self.shape):
            raise ValueError(f"shape {self.shape} and chunks {self.chunks} must be positive")
        if self.shards is not None and any(s % c for s, c in zip(self.shards, self.chunks, strict=True)):
            raise ValueError(f"shard shape {self.shards} is not a multiple of chunks {self.chunks}")


#: The default inner chunk edge (voxels) of spatial axes: small enough that an unaligned patch
#: decodes little beyond itself, large enough that a whole volume is few chunks (see README).
DEFAULT_CHUNK_EDGE = 32
#: Upper bound on the voxels of one shard (one object in the store); larger volumes get several.
MAX_SHARD_VOXELS = 1 << 27


def default_chunks(shape: tuple[int, ...], edge: int = DEFAULT_CHUNK_EDGE) -> tuple[int, ...]:
    """Isotropic ``edge``-voxel chunks over the first three axes, 1 along any further axis."""
    return tuple(min(edge, s) if i < 3 else 1 for i, s in enumerate(shape))


def default_shards(
    shape: tuple[int, ...], chunks: tuple[int, ...], max_voxels: int = MAX_SHARD_VOXELS
) -> tuple[int, ...]:
    """The shard shape: the whole volume rounded up to chunks, halved until under ``max_voxels``."""
    shard = [math.ceil(s / c) * c for s, c in zip(shape, chunks, strict=True)]
    while math.prod(shard) > max_voxels:
        axis = int(np.argmax([s // c for s, c in zip(shard, chunks, strict=True)]))
        if shard[axis] == chunks[axis]:
            break
        shard[axis] = math.ceil(shard[axis] // chunks[axis] / 2) * chunks[axis]
    return tuple(shard)


def normalize_region(region: Any, shape: tuple[int, ...]) -> tuple[Region, tuple[int, ...]]:
    """Turns an index (ints, slices with step 1, Ellipsis) into full slices plus the axes to drop.

    Returns ``(region, squeeze_axes)``: one slice per axis clipped to the shape, and the axes that
    were indexed by an integer (to be removed from the result).
    """
    if not isinstance(region, tuple):
        region = (region,)
    if any(r is Ellipsis for r in region):
        i = next(k for k, r in enumerate(region) if r is Ellipsis)
        fill = (slice(None),) * (len(shape) - len(region) + 1)
        region = region[:i] + fill + region[i + 1 :]
    if len(region) > len(shape):
        raise IndexError(f"too many indices ({len(region)}) for a {len(shape)}-d volume")
    region = region + (slice(None),) * (len(shape) - len(region))
    out: list[slice] = []
    squeeze: list[int] = []
    for axis, (r, n) in enumerate(zip(region, shape, strict=True)):
        if isinstance(r, (bool, np.bool_)):  # numpy reads True as a new axis, not as index 1
            raise IndexError(f"unsupported index {r!r} (a bool): use ints and step-1 slices")
        if isinstance(r, (int, np.integer)):
            i = int(r) + n if r < 0 else int(r)
            if not 0 <= i < n:
                raise IndexError(f"index {r} out of range for axis {axis} of size {n}")
            out.append(slice(i, i + 1))
            squeeze.append(axis)
        elif isinstance(r, slice):
            start, stop, step = r.indices(n)
            if step != 1:
                raise IndexError("only step-1 slices are read from storage; slice the result instead")
            out.append(slice(start, max(start, stop)))
        else:
            raise IndexError(f"unsupported index {r!r}: use ints and step-1 slices")
    return tuple(out), tuple(squeeze)


def region_shape(region: Region) -> tuple[int, ...]:
    """The shape of a normalised region."""
    return tuple(r.stop - r.start for r in region)


class ReadFuture(Protocol):
    """A read in flight (:meth:`ArrayHandle.read_async`): ``result()`` waits for the array.

    ``result()`` raises the same typed errors as :meth:`ArrayHandle.read` (``CorruptDataError``
    for damaged data, ...), when the future is consumed; ``cancel()`` asks to drop the read (the
    result is then never used); ``done()`` tells whether ``result()`` would return at once.
    """

    def result(self) -> np.ndarray: ...

    def cancel(self) -> bool: ...

    def done(self) -> bool: ...


class CompletedRead:
    """A :class:`ReadFuture` whose read already ran: holds the array, or the exception it raised."""

    __slots__ = ("_error", "_value")

    def __init__(self, value: np.ndarray | None = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error

    def result(self) -> np.ndarray:
        """The array; re-raises the read's exception (first raised when the read ran)."""
        if self._error is not None:
            raise self._error
        return cast(np.ndarray, self._value)  # one of value / error is always set

    def cancel(self) -> bool:
        """Too late: the read already ran."""
        return False

    def done(self) -> bool:
        """Always ``True``."""
        return True


class ArrayHandle(ABC):
    """An open array. Handles are per process: never share one across ``fork``."""

    spec: ArraySpec
    attrs: Mapping[str, Any]
    #: Where the array lives: named in the errors of its reads and writes.
    _uri: str = ""
    #: ``True`` when :meth:`read_async` returns before the data is read and decoded (the engine
    #: works on its own threads); ``False``: the default, which reads synchronously.
    async_reads: ClassVar[bool] = False
    #: ``True`` when a child forked from a process that has used tensorstore reads this array at full
    #: speed (it never touches tensorstore); ``False`` for tensorstore's reads, which such a child
    #: cannot use (it falls back to zarr-python, several times slower).
    fork_safe: ClassVar[bool] = True

    @property
    def shape(self) -> tuple[int, ...]:
        return self.spec.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.spec.dtype)

    @abstractmethod
    def read(self, region: Region, out: np.ndarray | None = None) -> np.ndarray:
        """Reads a normalised region, into ``out`` (C-contiguous, right shape/dtype) when given."""

    def read_async(self, region: Region) -> ReadFuture:
        """Starts reading a normalised region; the future's ``result()`` is the array.

        The default reads synchronously and returns a :class:`CompletedRead` (errors are raised
        when the result is consumed, as for a real future). Engines with asynchronous I/O and
        decode override it and set :attr:`async_reads`.
        """
        try:
            return CompletedRead(self.read(region))
        except Exception as exc:  # noqa: BLE001 - re-raised by result(), where the caller consumes it
            return CompletedRead(error=exc)

    @abstractmethod
    def write(self, region: Region, data: np.ndarray) -> None:
        """Writes ``data`` into a normalised region; ``StoreError`` before writing when its dtype
        does not cast safely to the array's (:meth:`writable`)."""

    def writable(self, data: np.ndarray) -> np.ndarray:
        """``data`` as a C-contiguous array of this array's dtype, ready for :meth:`write`.

        ``StoreError`` naming the array, before anything is written, when ``data``'s dtype does
        not cast safely to the array's: the write would lose values (floats truncated to integers,
        ``int32`` overflowing ``int16``, imaginary parts dropped), whatever the backend."""
        data = np.asarray(data)
        if not np.can_cast(data.dtype, self.dtype, casting="safe"):
            raise StoreError(self._uri, f"cannot write {data.dtype} voxels into a {self.dtype} array without loss")
        return np.ascontiguousarray(data, dtype=self.dtype)

    def seal(self) -> str:
        """Records what the written array consists of (its integrity record; see
        ``radiobject.storage.integrity``) and returns the record's checksum. Called once, after
        the last write; readers then refuse a missing, truncated or altered file."""
        raise NotImplementedError(f"{type(self).__name__} cannot seal its arrays")


class Backend(ABC):
    """A storage engine for arrays. Stateless apart from its ``StorageOptions``; picklable."""

    name: ClassVar[str]
    #: Engine-level checksums on new arrays (Zarr ``crc32c`` per chunk, TileDB SHA-256 filter).
    #: Only the checksum-overhead benchmark turns them off, on its own instance.
    checksums: bool = True
    #: Voxel dtypes of :data:`VOXEL_DTYPES` the engine has no type for (refused by :meth:`check_storable`).
    missing_dtypes: ClassVar[frozenset[np.dtype]] = frozenset()
    #: The names of the axes an array can have, in order (``None``: any number of axes).
    axis_names: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, storage: StorageOptions | None = None) -> None:
        self.storage = storage or StorageOptions()

    def check_storable(self, uri: str, shape: tuple[int, ...], dtype: Any, source: str | None = None) -> np.dtype:
        """The native-byte-order dtype an array at ``uri`` of this backend stores ``dtype`` voxels
        as, once it is sure it can hold an array of ``shape`` and ``dtype``.

        ``StoreError`` naming the array (and ``source``, the file the voxels come from, when given)
        otherwise: no axis or an empty one (a zero in ``shape``), more axes than :attr:`axis_names`,
        or a dtype :func:`voxel_dtype` refuses (not
        one of :data:`VOXEL_DTYPES`, or one of :attr:`missing_dtypes`). Run by every write path
        (``model.writer.write_image``, each backend's :meth:`create_array`) before anything is
        created or deleted, so a volume is refused with the same text whichever way it comes."""
        where = f"{source}: " if source else ""
        if not shape or min(int(s) for s in shape) < 1:
            raise StoreError(uri, f"{where}shape {tuple(shape)}: a volume needs at least one voxel along every axis")
        names = self.axis_names
        if names is not None and len(shape) > len(names):
            raise StoreError(
                uri,
                f"{where}{len(shape)} axes {tuple(shape)}: a {self.name} array holds at most {len(names)} "
                f"({', '.join(names)})",
            )
        return voxel_dtype(uri, dtype, self.name, self.missing_dtypes, source)

    @abstractmethod
    def create_array(self, uri: str, spec: ArraySpec, attrs: Mapping[str, Any]) -> ArrayHandle:
        """Creates (overwriting any partial leftover) an array at ``uri`` and returns it open."""

    @abstractmethod
    def open_array(self, uri: str) -> ArrayHandle:
        """Opens an existing array; raises ``StoreNotFoundError`` when there is none."""

    @abstractmethod
    def is_array(self, uri: str) -> bool:
        """True when an array of this backend exists at ``uri``."""

    @abstractmethod
    def delete_array(self, uri: str) -> None:
        """Removes the array at ``uri`` (no error when absent)."""

    @abstractmethod
    def create_group(self, uri: str, attrs: Mapping[str, Any]) -> None:
        """Creates a group (in the engine's own format) holding ``attrs``, overwriting the
        attributes of an existing one."""

    @abstractmethod
    def group_attrs(self, uri: str) -> dict[str, Any]:
        """The attributes of the group at ``uri`` (``FileNotFoundError`` when there is none)."""

    def members(self, uri: str) -> list[str]:
        """Names of the children of the group at ``uri`` (sub-groups and arrays)."""
        return groups.members(uri, self.storage)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.storage,))
