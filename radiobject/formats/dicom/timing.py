"""NIfTI-style spacing of a DICOM volume: ``zooms`` (voxel mm, then the time step) and units.

A 4D NIfTI carries its time spacing in ``pixdim[4]``; :func:`nifti_spacing` records a DICOM
series' the same way, as :mod:`radiobject.formats.nifti` does for a 4D NIfTI (``zooms``,
``xyz_units``, ``t_units``), so ``to_nifti`` of a DICOM fMRI / dynamic series writes what dcm2niix
writes: ``pixdim[4]`` = RepetitionTime in seconds (``TR_ms / 1000``), ``xyzt_units`` = mm + sec,
and ``pixdim[4] = 0`` when the series has no RepetitionTime (with a warning).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from radiobject.geometry import spacing

__all__ = ["nifti_spacing", "repetition_time_ms"]

#: The functional group of an enhanced MR data set that holds RepetitionTime.
_MR_TIMING = "MRTimingAndRelatedParametersSequence"


def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def repetition_time_ms(ds: Dataset) -> float | None:
    """RepetitionTime (ms) of a data set: the top-level tag, else the enhanced MR timing
    functional group (shared, then the first frame's); ``None`` when absent, zero or not a number."""
    tr = _positive(ds.get("RepetitionTime"))
    if tr is not None:
        return tr
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        try:
            group = ds[seq].value[0] if seq in ds and len(ds[seq].value) else None
            item = group[_MR_TIMING].value[0] if group is not None and _MR_TIMING in group else None
        except (IndexError, KeyError, TypeError):
            continue
        if item is not None and (tr := _positive(item.get("RepetitionTime"))) is not None:
            return tr
    return None


def nifti_spacing(ds: Dataset, affine: np.ndarray, n_volumes: int) -> tuple[dict[str, Any], list[str]]:
    """(metadata, warnings) giving the NIfTI spacing of a volume read from ``ds``'s series.

    ``zooms`` holds the spacing of the affine's three columns (mm), then for ``n_volumes > 1`` the
    time step in seconds: RepetitionTime / 1000 (as dcm2niix), 0.0 when the series has none.
    ``xyz_units`` is ``"mm"``; 4D volumes add ``t_units = "sec"`` and (when known) ``repetition_time_s``.
    """
    meta: dict[str, Any] = {"xyz_units": "mm", "zooms": list(spacing(affine))}
    notes: list[str] = []
    if n_volumes > 1:
        tr = repetition_time_ms(ds)
        step = 0.0 if tr is None else tr / 1000.0
        meta["zooms"].append(step)
        meta["t_units"] = "sec"
        if tr is not None:
            meta["repetition_time_s"] = step
        else:
            notes.append(
                f"no RepetitionTime in a series of {n_volumes} volumes: the time spacing is unknown "
                f"(written as NIfTI pixdim[4] = 0, as dcm2niix does)"
            )
    return meta, notes
