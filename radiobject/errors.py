"""Typed exceptions. Each names the file, store or subject concerned and the reason."""

from __future__ import annotations


class RadiObjectError(Exception):
    """Base class of every error raised by radiobject."""


class InvalidIdError(RadiObjectError, ValueError):
    """A subject ID, obs ID or collection name is not safe to use as a path component."""

    def __init__(self, kind: str, value: object, reason: str) -> None:
        self.kind, self.value, self.reason = kind, value, reason
        super().__init__(f"invalid {kind} {value!r}: {reason}")


class StoreError(RadiObjectError):
    """A store cannot be created, opened or read."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri, self.reason = uri, reason
        super().__init__(f"{uri}: {reason}")


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No radiobject store (or volume) exists at the given URI."""


class StoreExistsError(StoreError, FileExistsError):
    """A store, collection or volume already exists where a new one was to be written."""


class NotFoundError(RadiObjectError, KeyError):
    """An obs ID, subject ID or collection name is not in the store."""

    def __init__(self, kind: str, key: object, where: str) -> None:
        self.kind, self.key, self.where = kind, key, where
        super().__init__(f"{kind} {key!r} not found in {where}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class DuplicateIdError(RadiObjectError, ValueError):
    """The same obs ID (or subject / collection pair) was given twice."""

    def __init__(self, kind: str, key: object, where: str) -> None:
        self.kind, self.key, self.where = kind, key, where
        super().__init__(f"duplicate {kind} {key!r} in {where}")


class ImageReadError(RadiObjectError):
    """An input image file cannot be read: not the expected format, truncated, or absurd."""

    def __init__(self, path: object, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class NiftiReadError(ImageReadError):
    """A NIfTI file cannot be read."""


class DicomError(ImageReadError):
    """A DICOM file or series cannot be read or turned into a volume."""


class MissingDecoderError(DicomError):
    """Pixel data uses a transfer syntax no installed decoder handles; names the package to install."""


class TiffError(ImageReadError):
    """A TIFF / OME-TIFF file cannot be read or converted."""


class AlignmentError(RadiObjectError, ValueError):
    """Volumes of one subject (e.g. image and label) differ in shape or affine."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject, self.reason = subject, reason
        super().__init__(f"subject {subject!r}: {reason}")


class GeometryError(RadiObjectError, ValueError):
    """An affine or an orientation is invalid (singular, not 4x4, non-finite)."""
