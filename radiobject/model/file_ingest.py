"""The settings of a file ingest, shared by every file constructor.

``RadiObject.from_files`` / ``from_niftis`` / ``from_dicoms`` and ``VolumeCollection.from_files`` /
``from_niftis`` / ``from_dicoms`` / ``from_tiffs`` take, besides their own keywords, those of
:class:`FileKeywords` (:class:`StoreKeywords` for a store; :class:`WriteKeywords` for a
collection's ``from_dicoms``, whose IDs are folder names). The keywords are typed
(``typing.Unpack``), so a type checker checks every call, and a misspelt one is a ``TypeError``.
Each constructor folds them into one :class:`FileIngest` (:class:`StoreIngest` for a store), which
it hands to the one ingest engine (``radiobject.model.engine`` -> ``radiobject.ingest.entry_points``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import pandas as pd

from radiobject.model.options import WriteOptions
from radiobject.storage.options import StorageOptions

__all__ = ["FileIngest", "FileKeywords", "StoreIngest", "StoreKeywords", "WriteKeywords"]


class WriteKeywords(TypedDict, total=False):
    """Keywords of how a file ingest writes (all optional; defaults as in :class:`FileIngest`).

    Attributes:
        options: backend, chunks, codec and ``workers`` of the new volumes (default ``WriteOptions()``).
        storage: where the store lives: a local folder or ``s3://`` with endpoint and credentials
            (default ``StorageOptions()``).
        progress: show a progress bar per collection (default off).
    """

    options: WriteOptions | None
    storage: StorageOptions | None
    progress: bool


class FileKeywords(WriteKeywords, total=False):
    """The keywords of :class:`WriteKeywords` and how subject IDs are read from paths.

    Attributes:
        subject_pattern: a regex whose group (or whole match) in a path is the subject ID (default:
            what a glob's wildcard matched, else the file name; see ``model.paths.subject_id_from_path``).
    """

    subject_pattern: str | None


class StoreKeywords(FileKeywords, total=False):
    """The keywords of :class:`FileKeywords` and the subject table of a new store
    (``RadiObject.from_files`` / ``from_niftis`` / ``from_dicoms``).

    Attributes:
        obs_meta: the subject table (``obs_subject_id`` or ``participant_id`` first), checked
            before any write; subjects without a volume are kept too (default none: one row per
            subject with a volume).
        validate_alignment: every subject's volumes must share shape and affine, checked before
            any pixel is written (from the header for NIfTI; default on).
    """

    obs_meta: pd.DataFrame | None
    validate_alignment: bool


@dataclass(frozen=True)
class FileIngest:
    """One file ingest's settings, as the engine receives them.

    Attributes:
        fmt: ``auto`` (detected from each file's content), ``nifti``, ``dicom`` or ``tiff``.
        subject_pattern: see :class:`FileKeywords`.
        canonical: store every volume in RAS+ axis order (off: as in the file).
        options: see :class:`WriteKeywords`.
        storage: see :class:`WriteKeywords`.
        progress: see :class:`WriteKeywords`.
        dicom_options: keyword options of the DICOM reader (e.g. ``philips_scaling``).
        tiff_series: the series read of every TIFF (``from_tiffs(series=N)``, ``from_files(tiff_series=N)``
            of a collection or a store); ``None`` = each TIFF's one image series, and a TIFF of several
            image series is refused, listing them. ``ValueError`` when < 0, or with a ``fmt`` that
            reads no TIFF (``nifti``, ``dicom``).
    """

    fmt: str = "auto"
    subject_pattern: str | None = None
    canonical: bool = False
    options: WriteOptions | None = None
    storage: StorageOptions | None = None
    progress: bool = False
    dicom_options: Mapping[str, Any] | None = None
    tiff_series: int | None = None

    def __post_init__(self) -> None:
        if self.tiff_series is not None and (isinstance(self.tiff_series, bool) or self.tiff_series < 0):
            raise ValueError(f"a TIFF series must be an index >= 0, not {self.tiff_series!r}")
        if self.tiff_series is not None and self.fmt not in ("auto", "tiff"):  # never accepted, then ignored
            raise ValueError(f"a TIFF series does not apply to fmt={self.fmt!r}: it reads no TIFF")


@dataclass(frozen=True)
class StoreIngest(FileIngest):
    """A :class:`FileIngest` of a new store (``RadiObject.from_files``), with its subject table.

    Attributes:
        obs_meta: see :class:`StoreKeywords`.
        validate_alignment: see :class:`StoreKeywords`.
    """

    obs_meta: pd.DataFrame | None = field(default=None, compare=False)
    validate_alignment: bool = True
