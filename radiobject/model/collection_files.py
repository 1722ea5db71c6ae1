"""The file constructors of ``VolumeCollection``: thin calls into the one ingest engine
(``radiobject.model.engine``; the same planning, checks, fingerprints and crash-safe write as
``radiobject ingest``).

Besides its own keywords each takes those of ``model.file_ingest.FileKeywords`` (``subject_pattern``,
``options``, ``storage``, ``progress``; ``from_dicoms``: ``WriteKeywords``, without ``subject_pattern``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Unpack

from radiobject.model import engine
from radiobject.model.file_ingest import FileIngest, FileKeywords, WriteKeywords
from radiobject.model.paths import PathSpec
from radiobject.storage.options import as_location

if TYPE_CHECKING:
    from radiobject.model.collection import VolumeCollection


class FileConstructors:
    """``from_niftis`` / ``from_dicoms`` / ``from_tiffs`` / ``from_files`` of a ``VolumeCollection``."""

    @classmethod
    def from_niftis(
        cls,
        uri: str | os.PathLike[str],
        paths_or_glob: PathSpec,
        *,
        reorient: bool = False,
        name: str | None = None,
        **kw: Unpack[FileKeywords],
    ) -> VolumeCollection:
        """Ingests NIfTI files; obs and subject IDs come from the path (see ``subject_id_from_path``).

        ``reorient=True`` stores every volume in RAS+ axis order; ``name``: the collection's name
        (default: the last part of ``uri``); ``**kw``: ``FileKeywords``.
        """
        uri = as_location(uri)
        return engine.collection_from_files(
            uri, paths_or_glob, FileIngest(fmt="nifti", canonical=reorient, **kw), name=name
        )

    @classmethod
    def from_dicoms(
        cls,
        uri: str | os.PathLike[str],
        series_folders: Mapping[str, str] | PathSpec,
        *,
        name: str | None = None,
        philips_scaling: str | None = None,
        resample_tilt: bool | str = False,
        **kw: Unpack[WriteKeywords],
    ) -> VolumeCollection:
        """Ingests DICOM series: ``{obs_id: folder}`` or folders / a glob (obs ID = folder name).

        ``philips_scaling``: ``"display"`` / ``"precise"`` (see ``formats.dicom.philips``);
        ``resample_tilt``: gantry-tilt correction (see ``formats.dicom.read_dicom_series``);
        ``**kw``: ``WriteKeywords``.
        """
        uri = as_location(uri)
        dicom = {k: v for k, v in (("philips_scaling", philips_scaling), ("resample_tilt", resample_tilt)) if v}
        ingest = FileIngest(fmt="dicom", dicom_options=dicom or None, **kw)
        return engine.collection_from_files(uri, series_folders, ingest, name=name)

    @classmethod
    def from_tiffs(
        cls,
        uri: str | os.PathLike[str],
        paths_or_glob: PathSpec,
        *,
        name: str | None = None,
        series: int | None = None,
        **kw: Unpack[FileKeywords],
    ) -> VolumeCollection:
        """Ingests TIFF / OME-TIFF files (level 0 of one series, copied block by block).

        ``series``: the series read of every file; ``None`` (default) = each file's one image series,
        and a file of several image series (a multi-image OME-TIFF, pages of several shapes) is
        refused before anything is written, with an ``ImageReadError`` listing them;
        ``**kw``: ``FileKeywords``.
        """
        uri = as_location(uri)
        ingest = FileIngest(fmt="tiff", tiff_series=series, **kw)
        return engine.collection_from_files(uri, paths_or_glob, ingest, name=name)

    @classmethod
    def from_files(
        cls,
        uri: str | os.PathLike[str],
        paths_or_glob: PathSpec,
        *,
        canonical: bool = False,
        name: str | None = None,
        tiff_series: int | None = None,
        **kw: Unpack[FileKeywords],
    ) -> VolumeCollection:
        """Ingests files of any supported format (NIfTI, DICOM series folder, TIFF), detected by content.

        ``canonical=True`` stores every volume in RAS+ axis order; ``tiff_series``: the series read
        of every TIFF (as ``from_tiffs(series=N)``); ``None`` (default) = each TIFF's one image
        series, and a TIFF of several image series is refused before anything is written, with an
        ``ImageReadError`` listing them (a negative one is a ``ValueError``); ``**kw``: ``FileKeywords``.
        """
        uri = as_location(uri)
        ingest = FileIngest(canonical=canonical, tiff_series=tiff_series, **kw)
        return engine.collection_from_files(uri, paths_or_glob, ingest, name=name)
