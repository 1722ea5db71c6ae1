"""Optional resampling of a read series: gantry-tilt correction and even slice spacing.

The reader keeps raw slices with their exact (sheared / mean-step) affine by default. On request
(``resample_tilt`` / ``resample_gaps`` of :func:`~radiobject.formats.dicom.read_dicom_series`)
the stack is resampled the way dcm2niix writes ``_Tilt``, ``_Eq`` and ``_Tilt_Eq`` (see
:mod:`.tilt`), and what was done is recorded in the volume's metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from radiobject.formats.dicom.frames import _num
from radiobject.formats.dicom.geometry import SliceGeometry
from radiobject.formats.dicom.tilt import (
    correct_tilt,
    equalise_spacing,
    plan_tilt,
    spacing_varies,
    tilt_affine,
)

TILT_MODES = ("exact", "dcm2niix")


def tilt_mode(resample_tilt: bool | str) -> str | None:
    """Normalise the ``resample_tilt`` argument: None (keep raw), ``"exact"`` or ``"dcm2niix"``."""
    if resample_tilt is False or resample_tilt is None:
        return None
    if resample_tilt is True:
        return "exact"
    if resample_tilt in TILT_MODES:
        return str(resample_tilt)
    raise ValueError(f"resample_tilt must be a bool or one of {TILT_MODES}, not {resample_tilt!r}")


def _padding(first: Dataset, slope: float | None, intercept: float | None) -> float | None:
    raw = first.get("PixelPaddingValue")
    if raw is None or isinstance(raw, bytes):
        return None
    v = _num(raw, float("nan"))
    if np.isnan(v):
        return None
    return v * (slope if slope is not None else 1.0) + (intercept if intercept is not None else 0.0)


def resample_series(
    array: np.ndarray,
    affine: np.ndarray,
    geo: SliceGeometry,
    positions: np.ndarray,
    iop: np.ndarray,
    pixel_spacing: tuple[float, float],
    first: Dataset,
    rescale: dict[str, Any],
    *,
    resample_tilt: bool | str = False,
    resample_gaps: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[str]]:
    """Apply the requested resampling to a sorted raw stack.

    Args:
        array: (x, y, z[, ...]) raw slices sorted along the normal; ``affine`` their raw affine.
        geo: the slice analysis; ``positions`` the sorted ImagePositionPatient values (LPS).
        iop, pixel_spacing: the series' orientation and (row, column) spacing.
        first: a data set of the series (PixelPaddingValue); ``rescale`` the modality-LUT facts.
        resample_tilt: False, True / ``"exact"``, or ``"dcm2niix"`` (see :mod:`.tilt`).
        resample_gaps: equalise uneven spacing of an untilted stack (dcm2niix ``_Eq``).

    Returns:
        ``(array, affine, metadata, warnings)``; ``metadata`` holds ``resampled`` (None, "tilt",
        "gaps" or "tilt+gaps") and, when done, ``tilt_correction`` / ``spacing_equalised``.
    """
    mode = tilt_mode(resample_tilt)
    slope, inter = rescale.get("rescale_slope"), rescale.get("rescale_intercept")
    meta: dict[str, Any] = {"resampled": None}
    warnings: list[str] = []
    nz = array.shape[2]
    done: list[str] = []
    distances = geo.distances - geo.distances[0]
    if mode is not None and geo.tilted and nz > 1:
        try:
            plan = plan_tilt(positions, iop, pixel_spacing)
        except ValueError as exc:
            warnings.append(f"gantry tilt not corrected: {exc}; stored raw slices")
            plan = None
        if plan is not None:
            array = correct_tilt(
                np.asarray(array), plan, padding_value=_padding(first, slope, inter), slope=slope, intercept=inter
            )
            spacing = float(plan.distances[-1] / (nz - 1))
            exact = tilt_affine(affine, plan, spacing, "exact")
            affine = tilt_affine(affine, plan, spacing, mode)
            meta["tilt_correction"] = {
                "method": "dcm2niix _Tilt (rows shifted, linear interpolation)",
                "tilt_deg": round(float(geo.tilt_deg), 4),
                "rows_added": plan.rows_added,
                "row_shift_per_mm": round(plan.row_shift_per_mm, 6),
                "origin": mode,
                "origin_offset_from_exact_mm": round(float(np.linalg.norm(affine[:3, 3] - exact[:3, 3])), 4),
                "max_slice_residual_rows": round(plan.residual_rows, 4),
            }
            if plan.residual_rows > 0.1:
                warnings.append(
                    f"slice positions deviate up to {plan.residual_rows:.2f} rows from a straight tilted "
                    "stack: each slice was shifted by its own offset (dcm2niix shifts linearly)"
                )
            if mode == "dcm2niix" and meta["tilt_correction"]["origin_offset_from_exact_mm"] > 1e-3:
                warnings.append(
                    "tilt corrected with dcm2niix's origin, which lies "
                    f"{meta['tilt_correction']['origin_offset_from_exact_mm']:.3f} mm from the DICOM "
                    "geometry for this tilt direction (use resample_tilt=True for the exact origin)"
                )
            done.append("tilt")
            distances = plan.distances
            if nz > 2 and spacing_varies(distances):
                # a tilt-corrected stack at uneven distances has no affine: always equalise
                array, sp = equalise_spacing(array, distances, slope=slope, intercept=inter)
                affine = affine.copy()
                affine[:3, 2] *= sp / spacing
                meta["spacing_equalised"] = _eq_meta(nz, array.shape[2], sp)
                done.append("gaps")
    if "tilt" not in done and resample_gaps and not geo.uniform and nz > 2:
        # along the raw slice step: a sheared (tilted, uncorrected) stack stays sheared
        array, sp = equalise_spacing(np.asarray(array), distances, slope=slope, intercept=inter)
        step = affine[:3, 2]
        normal = np.cross(affine[:3, 0], affine[:3, 1])
        along = abs(float(step @ normal)) / float(np.linalg.norm(normal))
        affine = affine.copy()
        affine[:3, 2] = step * (sp / along)
        meta["spacing_equalised"] = _eq_meta(nz, array.shape[2], sp)
        done.append("gaps")
    meta["resampled"] = "+".join(done) or None
    return array, affine, meta, warnings


def _eq_meta(n_in: int, n_out: int, spacing: float) -> dict[str, Any]:
    return {
        "method": "dcm2niix _Eq (linear between neighbouring slices)",
        "slices_in": int(n_in),
        "slices_out": int(n_out),
        "spacing_mm": round(float(spacing), 6),
    }


__all__ = ["TILT_MODES", "resample_series", "tilt_mode"]
