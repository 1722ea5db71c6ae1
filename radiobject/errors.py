"""Typed exceptions. Each names the file, store or subject concerned and the reason."""

from __future__ import annotations

from typing import Any


class RadiObjectError(Exception):
    """Base class of every error raised by radiobject."""


class _Picklable:
    """Errors whose ``__init__`` takes several fields pickle by those fields (worker processes)."""

    _fields: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), tuple(getattr(self, f) for f in self._fields))


class InvalidIdError(_Picklable, RadiObjectError, ValueError):
    """A subject ID, obs ID or collection name is not safe to use as a path component."""

    _fields = ("kind", "value", "reason")

    def __init__(self, kind: str, value: object, reason: str) -> None:
        self.kind, self.value, self.reason = kind, value, reason
        super().__init__(f"invalid {kind} {value!r}: {reason}")


class StoreError(_Picklable, RadiObjectError):
    """A store cannot be created, opened or read."""

    _fields: tuple[str, ...] = ("uri", "reason")

    def __init__(self, uri: str, reason: str) -> None:
        self.uri, self.reason = uri, reason
        super().__init__(f"{uri}: {reason}")


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No radiobject store (or volume) exists at the given URI."""


class StoreExistsError(StoreError, FileExistsError):
    """A store, collection or volume already exists where a new one was to be written."""


class NotFoundError(_Picklable, RadiObjectError, KeyError):
    """An obs ID, subject ID or collection name is not in the store."""

    _fields = ("kind", "key", "where")

    def __init__(self, kind: str, key: object, where: str) -> None:
        self.kind, self.key, self.where = kind, key, where
        super().__init__(f"{kind} {key!r} not found in {where}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class DuplicateIdError(_Picklable, RadiObjectError, ValueError):
    """The same obs ID (or subject / collection pair) was given twice."""

    _fields = ("kind", "key", "where")

    def __init__(self, kind: str, key: object, where: str) -> None:
        self.kind, self.key, self.where = kind, key, where
        super().__init__(f"duplicate {kind} {key!r} in {where}")


class ImageReadError(_Picklable, RadiObjectError):
    """An input image file cannot be read: not the expected format, truncated, or absurd."""

    _fields = ("path", "reason")

    def __init__(self, path: object, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class NiftiReadError(ImageReadError):
    """A NIfTI file cannot be read."""


class SourceTimeoutError(ImageReadError, TimeoutError):
    """Reading or decoding one source did not finish within the per-item time limit (a hung
    network mount, a stuck device): that item fails, the rest of the ingest goes on. Names the
    file and the limit (``WriteOptions.item_timeout_s``, ``--item-timeout``,
    ``RADIOBJECT_ITEM_TIMEOUT``)."""

    def __init__(self, path: object, limit_s: float, what: str = "reading") -> None:
        self.limit_s, self.what = float(limit_s), what
        super().__init__(
            path,
            f"{what} did not finish within the item time limit of {self.limit_s:g} s; the read was "
            f"abandoned and nothing was stored (raise it with --item-timeout / RADIOBJECT_ITEM_TIMEOUT)",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.limit_s, self.what))


class DicomError(ImageReadError):
    """A DICOM file or series cannot be read or turned into a volume."""


class MissingDecoderError(DicomError):
    """Pixel data uses a transfer syntax no installed decoder handles; names the package to install."""


class TiffError(ImageReadError):
    """A TIFF / OME-TIFF file cannot be read or converted."""


class AlignmentError(_Picklable, RadiObjectError, ValueError):
    """Volumes of one subject (e.g. image and label) differ in shape or affine."""

    _fields = ("subject", "reason")

    def __init__(self, subject: str, reason: str) -> None:
        self.subject, self.reason = subject, reason
        super().__init__(f"subject {subject!r}: {reason}")


class GeometryError(RadiObjectError, ValueError):
    """An affine or an orientation is invalid (singular, not 4x4, non-finite)."""


class StoreLockedError(StoreError, TimeoutError):
    """Another writer holds the store's write lock longer than the timeout (names its holder)."""


class IncompleteStoreError(StoreError):
    """A store or collection is still being built by a constructor (``from_*``, ``resample``), or its
    builder ended before finishing (killed): it holds part of its data and is not opened as if whole."""


class VersionMismatchError(StoreError):
    """A volume's stored data and its catalog row disagree on the version (a torn or tampered store)."""


class UnsafePathError(StoreError):
    """A path inside a store is a symbolic link or leads outside the store / output folder."""


class SubjectTableError(_Picklable, RadiObjectError, ValueError):
    """A subject table (``participants.tsv`` / ``--subjects``) does not join the ingested images."""

    _fields = ("table", "reason")

    def __init__(self, table: str, reason: str) -> None:
        self.table, self.reason = table, reason
        super().__init__(f"subject table {table}: {reason}")


class LayoutError(_Picklable, RadiObjectError, ValueError):
    """A dataset layout (BIDS, MSD, nnU-Net) is missing a file or is inconsistent."""

    _fields = ("path", "reason")

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class ManifestError(_Picklable, RadiObjectError, ValueError):
    """A manifest or subject table cannot be used: not a regular file, not UTF-8, unparsable, bad
    columns. Names the file and, where known, the line (1-based, the header is line 1)."""

    _fields = ("path", "line", "reason")

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path, self.line, self.reason = str(path), int(line), reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


class SourceChangedError(_Picklable, RadiObjectError):
    """A stored volume's source files changed (or vanished) since it was ingested."""

    _fields = ("collection", "obs_id", "path", "reason")

    def __init__(self, collection: str, obs_id: str, path: str, reason: str) -> None:
        self.collection, self.obs_id, self.path, self.reason = collection, obs_id, path, reason
        super().__init__(f"{collection}/{obs_id}: source {path} {reason}")


class CorruptDataError(StoreError):
    """Stored bytes are damaged or missing: a checksum does not match, or a recorded file is absent
    or has the wrong size. Names the store, collection, subject and the damaged chunk / file."""

    _fields = ("uri", "reason", "part", "store", "collection", "subject")

    def __init__(
        self,
        uri: str,
        reason: str,
        part: str = "",
        store: str = "",
        collection: str = "",
        subject: str = "",
    ) -> None:
        self.part, self.store, self.collection, self.subject = part, store, collection, subject
        where = ", ".join(
            f"{k} {v!r}" for k, v in (("store", store), ("collection", collection), ("subject", subject)) if v
        )
        text = f"{reason}" + (f" [{part}]" if part else "") + (f" ({where})" if where else "")
        super().__init__(uri, text)
        self.reason = reason


class OutputTooLargeError(StoreError, MemoryError):
    """A volume to be computed (a resampled volume, a synthetic image) would need more memory than
    the budget of one image (``RADIOBJECT_MAX_IMAGE_BYTES``); refused before it is allocated."""


class FormatVersionError(StoreError):
    """A piece of a store (store, collection, volume, record) has a format version this code does
    not read, or pieces of one store disagree on their format version."""


class RemoteStorageError(StoreError, OSError):
    """Object storage did not answer in time, refused the connection, or failed after the retries
    set in ``StorageOptions(timeout_s=..., retries=...)``. Names the store or object and the cause."""
