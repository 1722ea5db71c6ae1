"""Read a DICOM series into an :class:`ImageData` (array x, y, z[, t], voxel -> RAS affine).

Entry points:

* :func:`read_dicom_series` - one series from a folder, a file, or a list of files.
* :func:`read_dicom_folder` / :func:`iter_dicom_folder` - every series under a folder tree, each
  paired with its :class:`ImageData` or the typed :class:`DicomError` explaining why not.

Frames (single-frame files, enhanced multi-frame frames, mosaic tiles) are grouped by position
along the slice normal; several frames per position become a 4th axis (time / diffusion / echo),
ordered by TemporalPositionIdentifier, AcquisitionNumber, InstanceNumber (or the enhanced
DimensionIndexValues). The modality LUT is applied (see :mod:`.decode` for the dtype rule).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from radiobject.formats.dicom.checks import (
    check_budget,
    check_consistent,
    group_positions,
    missing_instances,
)
from radiobject.formats.dicom.decode import (
    apply_modality_lut,
    decode_pixels,
    transfer_syntax,
)
from radiobject.formats.dicom.discover import Discovery, SeriesInfo, discover_series
from radiobject.formats.dicom.dwi import series_diffusion
from radiobject.formats.dicom.errors import (
    DicomError,
    MultipleSeriesError,
    SkippedSeriesError,
)
from radiobject.formats.dicom.frames import Frame, classic_frames
from radiobject.formats.dicom.geometry import (
    analyse_positions,
    lps_to_ras,
    plane_affine_lps,
    slice_normal,
)
from radiobject.formats.dicom.header import header_fields
from radiobject.formats.dicom.mosaic import (
    extract_tile,
    is_mosaic,
    mosaic_frames,
    mosaic_layout,
)
from radiobject.formats.dicom.multiframe import enhanced_frames, is_enhanced
from radiobject.formats.dicom.philips import apply_philips, is_philips, philips_mode
from radiobject.formats.dicom.resample import resample_series
from radiobject.formats.dicom.timing import nifti_spacing
from radiobject.formats.image import ImageData

PathLike = str | os.PathLike[str]


def frames_of(ds: Dataset, index: int) -> list[Frame]:
    """The frames of one data set (mosaic tiles, enhanced frames, or the classic image)."""
    if is_mosaic(ds):
        return mosaic_frames(ds, index)
    if is_enhanced(ds) and int(ds.get("NumberOfFrames", 1) or 1) >= 1 and "PerFrameFunctionalGroupsSequence" in ds:
        return enhanced_frames(ds, index)
    return classic_frames(ds, index)


class _PixelCache:
    """Decodes each data set once and hands out 2D frames."""

    def __init__(self, datasets: list[Dataset], decoder: str) -> None:
        self.datasets, self.decoder = datasets, decoder
        self.cache: dict[int, np.ndarray] = {}
        self.layout: dict[int, tuple[int, int, int, int]] = {}

    def get(self, f: Frame) -> np.ndarray:
        ds = self.datasets[f.ds_index]
        arr = self.cache.get(f.ds_index)
        if arr is None:
            arr = decode_pixels(ds, getattr(ds, "radiobject_path", ""), backend=self.decoder)
            self.cache[f.ds_index] = arr
        if f.tile is not None:
            if f.ds_index not in self.layout:
                self.layout[f.ds_index] = mosaic_layout(ds)
            _, m, tr, tc = self.layout[f.ds_index]
            return extract_tile(arr, f.tile, m, tr, tc)
        if f.frame is not None:
            spp = int(ds.get("SamplesPerPixel", 1))
            single = arr.ndim == (3 if spp > 1 else 2)
            return arr if single else arr[f.frame]
        return arr


def series_to_image(
    info: SeriesInfo,
    *,
    resample_tilt: bool | str = False,
    resample_gaps: bool = False,
    include_patient: bool = False,
    decoder: str = "auto",
    philips_scaling: str | None = None,
) -> ImageData:
    """Convert one discovered series to an :class:`ImageData` (see :func:`read_dicom_series`)."""
    where = f"series {info.key} ({os.path.dirname(info.paths[0])})"
    philips = philips_mode(philips_scaling)
    if info.skipped_reason:
        raise SkippedSeriesError(where, info.skipped_reason)
    frames: list[Frame] = []
    for i, ds in enumerate(info.datasets):
        frames.extend(frames_of(ds, i))
    check_consistent(frames, where)
    f0 = frames[0]
    normal = slice_normal(f0.iop)
    groups = group_positions(frames, normal, where)
    nz, nt = len(groups), len(groups[0])
    first = info.first
    fallback = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    geo = analyse_positions(np.array([g[0].ipp for g in groups]), f0.iop, fallback)
    warnings = list(geo.warnings)
    if info.duplicates:
        warnings.append(f"{len(info.duplicates)} duplicate file(s) (same SOPInstanceUID) ignored")
    if nz == 1 and nt > 1 and not is_enhanced(first) and not is_mosaic(first):
        warnings.append(
            f"all {nt} images share one slice position: stored as a single-slice series "
            f"of {nt} volumes (x, y, 1, {nt}); check it is not duplicated images"
        )
    missing = missing_instances(info)
    if missing:
        warnings.append(
            f"{len(missing)} instance number(s) missing between the series' first and last image "
            f"(e.g. {', '.join(map(str, missing[:10]))}): files of the series may be missing"
        )
    ordered = [g[t] for t in range(nt) for g in groups]  # t-major, z-minor
    check_budget(ordered, first, where)
    cache = _PixelCache(info.datasets, decoder)
    sample = cache.get(ordered[0])
    stack = np.empty((len(ordered),) + sample.shape, dtype=sample.dtype)
    for n, f in enumerate(ordered):
        stack[n] = cache.get(f)
    cache.cache.clear()
    spp = int(first.get("SamplesPerPixel", 1))
    if spp == 1:
        values, rescale = apply_modality_lut(
            stack,
            [f.slope for f in ordered],
            [f.intercept for f in ordered],
            stack.dtype.itemsize,
        )
    else:
        values, rescale = (
            stack.astype(stack.dtype.newbyteorder("=")),
            {"rescale_slope": None, "rescale_intercept": None, "rescale_varies": False},
        )
    philips_record = None
    if spp == 1 and is_philips(first):
        values, philips_record = apply_philips(values, ordered, info.datasets, philips)
        if philips_record["mode"] == "precise":  # resampling must not round in stored units
            rescale = {**rescale, "rescale_slope": None, "rescale_intercept": None}
        elif "reason" in philips_record:
            warnings.append(f"Philips precise scaling not applied: {philips_record['reason']}")
    values = values.reshape((nt, nz) + values.shape[1:])
    # (t, z, rows, cols[, s]) -> (cols, rows, z, t[, s])
    axes = (3, 2, 1, 0) + ((4,) if spp > 1 else ())
    array = values.transpose(axes)
    if nt == 1:
        array = array[:, :, :, 0]
    affine = lps_to_ras(plane_affine_lps(f0.iop, f0.pixel_spacing, groups[0][0].ipp, geo.step))
    array, affine, resampled_meta, more = resample_series(
        np.asarray(array),
        affine,
        geo,
        np.array([g[0].ipp for g in groups])[geo.order],
        f0.iop,
        f0.pixel_spacing,
        first,
        rescale,
        resample_tilt=resample_tilt,
        resample_gaps=resample_gaps,
    )
    warnings.extend(more)
    diffusion, notes = series_diffusion([[g[t] for g in groups] for t in range(nt)], info.datasets, affine)
    warnings.extend(notes)
    spacing_meta, notes = nifti_spacing(first, affine, nt)
    warnings.extend(notes)
    meta: dict[str, Any] = {
        "format": "dicom",
        "series_uid": info.series_uid,
        "series_key": info.key,
        "split": info.split,
        "n_files": len(info.datasets),
        "transfer_syntax": transfer_syntax(first),
        "slice_spacing_mm": float(geo.spacing),
        "slice_positions_mm": [round(float(x), 4) for x in geo.distances],
        "gantry_tilt_deg": round(float(geo.tilt_deg), 4),
        "uniform_spacing": bool(geo.uniform),
        "slice_gaps": [{"after_slice": i, "step_mm": x, "missing_estimate": m} for i, x, m in geo.gaps],
        "missing_instance_numbers": missing[:100],
        "n_missing_instance_numbers": len(missing),
        **resampled_meta,
        "n_volumes": nt,
        **spacing_meta,
        "samples_per_pixel": spp,
        **rescale,
        "warnings": warnings,
        "dicom": header_fields(first, include_patient=include_patient),
    }
    if diffusion is not None:
        meta["diffusion"] = diffusion
    if philips_record is not None:
        meta["philips_scaling"] = philips_record
    return ImageData(array=array, affine=affine, metadata=meta, source=os.path.dirname(info.paths[0]))


def _pick(disc: Discovery, series_uid: str | None, where: str) -> SeriesInfo:
    usable = [s for s in disc.series if s.skipped_reason is None]
    if series_uid is not None:
        match = [s for s in disc.series if series_uid in (s.series_uid, s.key)]
        if len(match) == 1 or (match and all(s.key == match[0].key for s in match)):
            return match[0]
        if len(match) > 1:
            raise MultipleSeriesError(
                where,
                f"series UID {series_uid} was split into "
                f"{', '.join(s.key + ' (' + s.split + ')' for s in match)}: pass a key",
            )
        raise DicomError(where, f"no series with UID / key {series_uid}")
    if len(usable) == 1:
        return usable[0]
    if not usable:
        if disc.series:
            reasons = "; ".join(f"{s.key}: {s.skipped_reason}" for s in disc.series)
            raise SkippedSeriesError(where, f"no convertible series ({reasons})")
        shown = "; ".join(f"{p}: {r}" for p, r in disc.skipped_files[:3])
        raise DicomError(
            where,
            f"no DICOM images found ({len(disc.skipped_files)} non-DICOM files" + (f": {shown}" if shown else "") + ")",
        )
    raise MultipleSeriesError(
        where,
        f"{len(usable)} series found, pass series_uid= one of: "
        + ", ".join(
            f"{s.key} ({s.to_dict()['series_description']}{', ' + s.split if s.split else ''})" for s in usable
        ),
    )


def read_dicom_series(
    source: PathLike | Sequence[PathLike],
    *,
    series_uid: str | None = None,
    resample_tilt: bool | str = False,
    resample_gaps: bool = False,
    include_patient: bool = False,
    decoder: str = "auto",
    philips_scaling: str | None = None,
) -> ImageData:
    """Read one DICOM series as a volume.

    Args:
        source: a folder (searched recursively), a single file, or a list of files.
        series_uid: which series to read when ``source`` holds several; a SeriesInstanceUID or a
            split key (``"<uid>#2"``) from :func:`discover_series`.
        resample_tilt: remove gantry tilt by resampling like dcm2niix ``_Tilt`` (uneven spacing is
            then equalised too, ``_Tilt_Eq``); ``True`` / ``"exact"`` puts every voxel where the
            DICOM geometry says, ``"dcm2niix"`` also copies dcm2niix's origin (off for one tilt
            direction, see :mod:`.tilt`). Default False: raw slices, the exact sheared affine
            and a warning. What was done is in ``metadata["tilt_correction"]``.
        resample_gaps: resample missing slices / uneven spacing of an untilted stack onto an even
            grid (dcm2niix ``_Eq``; default: raw slices, a warning, the mean step in the affine);
            recorded in ``metadata["spacing_equalised"]``.
        include_patient: also keep patient-identifying header fields in ``metadata["dicom"]``.
        decoder: ``"auto"``, ``"pydicom"`` or ``"imagecodecs"`` (see :func:`decode_pixels`).
        philips_scaling: ``"display"`` (modality LUT) or ``"precise"`` (Philips floating-point
            values); None: ``$RADIOBJECT_PHILIPS_SCALING``, else display (see :mod:`.philips`).

    Returns:
        :class:`ImageData`: ``array`` (x=columns, y=rows, z=slices[, t][, rgb]) after the modality
        LUT; ``affine`` voxel -> RAS mm; ``metadata`` with ``warnings`` (gaps, tilt, skipped
        files), ``dicom`` (selected header fields) and geometry facts; ``source`` the folder.

    Raises:
        MultipleSeriesError: several series and no ``series_uid``.
        SkippedSeriesError: the only series is a localizer / non-image object.
        SeriesGeometryError: the images do not form a volume.
        MissingDecoderError: a compressed transfer syntax has no installed decoder.
        DicomError: anything else (no DICOM files, truncated pixel data, ...).
    """
    where = str(source) if isinstance(source, (str, os.PathLike)) else f"{len(source)} files"
    disc = discover_series(source)
    info = _pick(disc, series_uid, where)
    img = series_to_image(
        info,
        resample_tilt=resample_tilt,
        resample_gaps=resample_gaps,
        include_patient=include_patient,
        decoder=decoder,
        philips_scaling=philips_scaling,
    )
    if disc.skipped_files:
        img.metadata["warnings"].append(f"{len(disc.skipped_files)} non-DICOM file(s) skipped")
        img.metadata["skipped_files"] = [list(x) for x in disc.skipped_files]
    return img


class DicomFolderResult(list):
    """List of ``(SeriesInfo, ImageData | DicomError)``; ``skipped_files`` lists non-DICOM files."""

    skipped_files: list[tuple[str, str]]


def iter_dicom_folder(
    root: PathLike | Sequence[PathLike],
    *,
    resample_tilt: bool | str = False,
    resample_gaps: bool = False,
    include_patient: bool = False,
    decoder: str = "auto",
    discovery: Discovery | None = None,
    philips_scaling: str | None = None,
) -> Iterator[tuple[SeriesInfo, ImageData | DicomError]]:
    """Like :func:`read_dicom_folder` but yields one series at a time (one volume in memory)."""
    disc = discovery or discover_series(root)
    for info in disc.series:
        try:
            yield (
                info,
                series_to_image(
                    info,
                    resample_tilt=resample_tilt,
                    resample_gaps=resample_gaps,
                    include_patient=include_patient,
                    decoder=decoder,
                    philips_scaling=philips_scaling,
                ),
            )
        except DicomError as exc:
            yield info, exc
        except Exception as exc:  # noqa: BLE001 - one odd series must not stop a folder ingest
            where = f"series {info.key} ({os.path.dirname(info.paths[0])})"
            yield info, DicomError(where, f"unexpected {type(exc).__name__}: {exc}")


def read_dicom_folder(
    root: PathLike | Sequence[PathLike],
    *,
    resample_tilt: bool | str = False,
    resample_gaps: bool = False,
    include_patient: bool = False,
    decoder: str = "auto",
    philips_scaling: str | None = None,
) -> DicomFolderResult:
    """Read every series under a folder tree; a bad series never stops the others.

    Args:
        root: folder searched recursively (or a list of files).
        resample_tilt, resample_gaps, include_patient, decoder, philips_scaling: as in
            :func:`read_dicom_series`.

    Returns:
        :class:`DicomFolderResult`: a list of ``(SeriesInfo, ImageData | DicomError)`` in
        (study, series number) order, including skipped series (localizers, RTSTRUCT, SEG) as
        :class:`SkippedSeriesError`; ``.skipped_files`` holds ``(path, reason)`` of non-DICOM files.
    """
    disc = discover_series(root)
    out = DicomFolderResult(
        iter_dicom_folder(
            root,
            resample_tilt=resample_tilt,
            resample_gaps=resample_gaps,
            include_patient=include_patient,
            decoder=decoder,
            discovery=disc,
            philips_scaling=philips_scaling,
        )
    )
    out.skipped_files = list(disc.skipped_files)
    return out
