"""The file constructors of ``VolumeCollection``: thin calls into the one ingest engine
(``radiobject.model.engine``; the same planning, checks, fingerprints and crash-safe write as
``radiobject ingest``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from radiobject.model import engine
from radiobject.model.options import WriteOptions
from radiobject.model.paths import PathSpec
from radiobject.storage.options import StorageOptions

if TYPE_CHECKING:
    from radiobject.model.collection import VolumeCollection


class FileConstructors:
    """``from_niftis`` / ``from_dicoms`` / ``from_tiffs`` / ``from_files`` of a ``VolumeCollection``."""

    @classmethod
    def from_niftis(
        cls,
        uri: str,
        paths_or_glob: PathSpec,
        *,
        subject_pattern: str | None = None,
        reorient: bool = False,
        name: str | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        progress: bool = False,
    ) -> VolumeCollection:
        """Ingests NIfTI files; obs and subject IDs come from the path (see ``subject_id_from_path``)."""
        # the one ingest engine (radiobject.ingest, registered in radiobject.model.engine)
        return engine.collection_from_files(
            uri,
            paths_or_glob,
            fmt="nifti",
            subject_pattern=subject_pattern,
            canonical=reorient,
            name=name,
            options=options,
            storage=storage,
            progress=progress,
        )

    @classmethod
    def from_dicoms(
        cls,
        uri: str,
        series_folders: Mapping[str, str] | PathSpec,
        *,
        name: str | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        progress: bool = False,
        philips_scaling: str | None = None,
        resample_tilt: bool | str = False,
    ) -> VolumeCollection:
        """Ingests DICOM series: ``{obs_id: folder}`` or folders / a glob (obs ID = folder name).

        ``philips_scaling``: ``"display"`` / ``"precise"`` (see ``formats.dicom.philips``);
        ``resample_tilt``: gantry-tilt correction (see ``formats.dicom.read_dicom_series``).
        """
        # the one ingest engine (radiobject.ingest, registered in radiobject.model.engine)
        return engine.collection_from_files(
            uri,
            series_folders,
            fmt="dicom",
            name=name,
            options=options,
            storage=storage,
            progress=progress,
            dicom_options={
                k: v for k, v in (("philips_scaling", philips_scaling), ("resample_tilt", resample_tilt)) if v
            }
            or None,
        )

    @classmethod
    def from_tiffs(
        cls,
        uri: str,
        paths_or_glob: PathSpec,
        *,
        subject_pattern: str | None = None,
        name: str | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        progress: bool = False,
    ) -> VolumeCollection:
        """Ingests TIFF / OME-TIFF files (level 0 of series 0, copied block by block)."""
        # the one ingest engine (radiobject.ingest, registered in radiobject.model.engine)
        return engine.collection_from_files(
            uri,
            paths_or_glob,
            fmt="tiff",
            subject_pattern=subject_pattern,
            name=name,
            options=options,
            storage=storage,
            progress=progress,
        )

    @classmethod
    def from_files(
        cls,
        uri: str,
        paths_or_glob: PathSpec,
        *,
        subject_pattern: str | None = None,
        canonical: bool = False,
        name: str | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        progress: bool = False,
    ) -> VolumeCollection:
        """Ingests files of any supported format (NIfTI, DICOM series folder, TIFF), detected by content."""
        # the one ingest engine (radiobject.ingest, registered in radiobject.model.engine)
        return engine.collection_from_files(
            uri,
            paths_or_glob,
            fmt="auto",
            subject_pattern=subject_pattern,
            canonical=canonical,
            name=name,
            options=options,
            storage=storage,
            progress=progress,
        )
