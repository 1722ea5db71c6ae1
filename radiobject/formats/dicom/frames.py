"""One 2D image ("frame") of a series with its own geometry and rescale, from any file layout.

Classic single-frame files give one :class:`Frame`; enhanced multi-frame files one per frame
(:mod:`.multiframe`); Siemens mosaics one per tile (:mod:`.mosaic`). The series assembler sorts and
stacks frames without caring where they came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from radiobject.formats.dicom.errors import DicomError, SeriesGeometryError


@dataclass
class Frame:
    """One 2D image of a series.

    Attributes:
        ds_index: index of its data set in the series' list.
        frame: frame index in the decoded pixel array (None for single-frame files).
        tile: mosaic tile index (None unless a Siemens mosaic).
        ipp: ImagePositionPatient of the frame's first pixel (LPS mm).
        iop: ImageOrientationPatient (6 floats).
        pixel_spacing: (row spacing, column spacing) in mm.
        rows, cols: size of the frame.
        slope, intercept: modality LUT of the frame.
        order: sort key among frames at the same position (time / volume order).
    """

    ds_index: int
    frame: int | None
    tile: int | None
    ipp: np.ndarray
    iop: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    cols: int
    slope: float
    intercept: float
    order: tuple[Any, ...]


def _num(v: Any, default: float = 0.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def order_key(ds: Dataset, extra: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """Temporal / volume order of single-frame images at one position (dcm2niix-like)."""
    return (
        _num(ds.get("TemporalPositionIdentifier")),
        _num(ds.get("AcquisitionNumber")),
        _num(ds.get("InstanceNumber")),
        *extra,
        str(getattr(ds, "radiobject_path", "")),
    )


def rescale_of(ds: Any, path: str, where: str = "") -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of a data set or functional-group item; a slope of 0 (or
    none) is 1 and no intercept is 0, as every reader does. A NaN or infinite value would make
    every voxel NaN / infinite: ``DicomError`` naming the file."""
    slope = _num(ds.get("RescaleSlope"), 1.0) or 1.0
    inter = _num(ds.get("RescaleIntercept"), 0.0)
    if not (math.isfinite(slope) and math.isfinite(inter)):
        raise DicomError(
            path,
            f"{where}RescaleSlope {slope!r} / RescaleIntercept {inter!r} is not a finite number "
            f"(every voxel would be NaN or infinite)",
        )
    return slope, inter


def spacing_of(ds: Dataset, path: str) -> tuple[float, float]:
    """(row, column) PixelSpacing, falling back to ImagerPixelSpacing."""
    ps = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if ps is None or len(ps) != 2:
        raise SeriesGeometryError(path, "no PixelSpacing: cannot build a patient-space affine")
    return float(ps[0]), float(ps[1])


def classic_frames(ds: Dataset, index: int) -> list[Frame]:
    """Frames of a classic (not enhanced) image: one, or one per frame of a legacy multi-frame."""
    path = str(getattr(ds, "radiobject_path", ""))
    iop = ds.get("ImageOrientationPatient")
    ipp = ds.get("ImagePositionPatient")
    if iop is None or ipp is None or len(iop) != 6 or len(ipp) != 3:
        raise SeriesGeometryError(
            path,
            "no ImagePositionPatient / ImageOrientationPatient (not a cross-sectional image)",
        )
    iop_a = np.asarray([float(x) for x in iop])
    ipp_a = np.asarray([float(x) for x in ipp])
    sp = spacing_of(ds, path)
    slope, inter = rescale_of(ds, path)
    rows, cols = int(ds.Rows), int(ds.Columns)
    n = int(_num(ds.get("NumberOfFrames"), 1) or 1)
    if n == 1:
        return [Frame(index, None, None, ipp_a, iop_a, sp, rows, cols, slope, inter, order_key(ds))]
    offsets = ds.get("GridFrameOffsetVector")  # RT dose / NM: frames along the normal
    along = offsets is not None and len(offsets) == n
    normal = np.cross(iop_a[:3], iop_a[3:])
    return [
        Frame(
            index,
            f,
            None,
            ipp_a + normal * float(offsets[f]) if along else ipp_a,
            iop_a,
            sp,
            rows,
            cols,
            slope,
            inter,
            order_key(ds, (f,)),
        )
        for f in range(n)
    ]
