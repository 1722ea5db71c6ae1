"""DICOM-specific typed errors (all subclass :class:`radiobject.errors.DicomError`)."""

from __future__ import annotations

from radiobject.errors import DicomError, MissingDecoderError


class NotDicomError(DicomError):
    """A file is not DICOM (no DICM prefix and no parseable data set with image attributes)."""


class SkippedSeriesError(DicomError):
    """A series was deliberately not converted (localizer, screen capture, non-image object)."""


class SeriesGeometryError(DicomError):
    """Slices of a series do not form a volume (missing geometry, uneven slice counts, mixed sizes)."""


class UnreadableInputError(DicomError):
    """A file or folder of a DICOM tree cannot be listed or read (permissions, I/O error, dangling
    link): the series / subject fails instead of being built from the remaining slices."""


class InputTooLargeError(DicomError):
    """A file, a gzip stream or a series' pixel data exceeds the memory budget of one image read
    (``RADIOBJECT_MAX_IMAGE_BYTES``); refused before it is read."""


class MultipleSeriesError(DicomError):
    """``read_dicom_series`` was given files of several series and no ``series_uid`` to pick one."""


__all__ = [
    "DicomError",
    "InputTooLargeError",
    "MissingDecoderError",
    "MultipleSeriesError",
    "NotDicomError",
    "SeriesGeometryError",
    "SkippedSeriesError",
    "UnreadableInputError",
]
