"""Slice geometry: ordering along the slice normal, the voxel -> RAS affine, gaps and gantry tilt.

Voxel order is NIfTI-like: ``i`` = DICOM column, ``j`` = DICOM row, ``k`` = slice (sorted along
the slice normal ``cross(row_cos, col_cos)``). ``ImageOrientationPatient`` gives the direction of
increasing column index (first triplet) and of increasing row index (second triplet);
``PixelSpacing`` is ``[row spacing, column spacing]``, so the first triplet is scaled by
``PixelSpacing[1]``. The slice column of the affine is the mean step between consecutive
``ImagePositionPatient`` values, never ``SliceThickness``: with gantry tilt this step is not along
the normal and the affine carries the exact shear. DICOM patient space is LPS; the returned
affines are RAS (first two rows negated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: relative deviation of one slice step from the median step that counts as a gap / uneven spacing
SPACING_TOLERANCE = 0.05
#: tilt (degrees) between the slice step and the normal above which a series counts as tilted
TILT_TOLERANCE_DEG = 0.1


def slice_normal(iop: np.ndarray) -> np.ndarray:
    """Unit normal ``cross(row_cos, col_cos)`` of an ImageOrientationPatient 6-vector."""
    iop = np.asarray(iop, dtype=np.float64)
    n = np.cross(iop[:3], iop[3:])
    return n / np.linalg.norm(n)


def plane_affine_lps(
    iop: np.ndarray,
    pixel_spacing: tuple[float, float],
    origin: np.ndarray,
    step: np.ndarray,
) -> np.ndarray:
    """4x4 voxel (col, row, slice) -> LPS affine from orientation, spacing, first position and step."""
    iop = np.asarray(iop, dtype=np.float64)
    aff = np.eye(4)
    aff[:3, 0] = iop[:3] * float(pixel_spacing[1])
    aff[:3, 1] = iop[3:] * float(pixel_spacing[0])
    aff[:3, 2] = np.asarray(step, dtype=np.float64)
    aff[:3, 3] = np.asarray(origin, dtype=np.float64)
    return aff


def lps_to_ras(aff: np.ndarray) -> np.ndarray:
    """Convert a voxel -> LPS affine into voxel -> RAS."""
    return LPS_TO_RAS @ np.asarray(aff, dtype=np.float64)


@dataclass
class SliceGeometry:
    """Geometry of a sorted stack of slice positions.

    Attributes:
        order: indices that sort the input positions along the slice normal.
        distances: sorted projections of the positions on the normal (mm).
        step: mean vector between consecutive sorted positions (LPS mm); the affine's slice column.
        spacing: ``|step . normal|``-free slice spacing = median distance between slices (mm).
        uniform: False when one step deviates from the median by more than SPACING_TOLERANCE.
        tilt_deg: angle between ``step`` and the normal (gantry tilt), 0 for a single slice.
        warnings: human-readable findings (gaps, uneven spacing, tilt).
        gaps: ``(after_slice, step_mm, missing)`` for each step over 1.5 median steps, with the
            estimated number of missing slices there.
    """

    order: np.ndarray
    distances: np.ndarray
    step: np.ndarray
    spacing: float
    uniform: bool
    tilt_deg: float
    warnings: list[str] = field(default_factory=list)
    gaps: list[tuple[int, float, int]] = field(default_factory=list)

    @property
    def tilted(self) -> bool:
        """True when the slice step is not along the normal (gantry tilt / sheared stack)."""
        return self.tilt_deg > TILT_TOLERANCE_DEG


def analyse_positions(positions: np.ndarray, iop: np.ndarray, fallback_spacing: float | None = None) -> SliceGeometry:
    """Sort slice positions along the normal, derive the step, find gaps and tilt.

    Args:
        positions: (n, 3) ImagePositionPatient values (one per distinct slice).
        iop: the shared ImageOrientationPatient.
        fallback_spacing: spacing for a single slice (SpacingBetweenSlices / SliceThickness).
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    normal = slice_normal(iop)
    d = pos @ normal
    order = np.argsort(d, kind="stable")
    pos, d = pos[order], d[order]
    warnings: list[str] = []
    if len(pos) < 2:
        sp = float(fallback_spacing or 1.0)
        return SliceGeometry(order, d, normal * sp, sp, True, 0.0, warnings)
    steps = np.diff(pos, axis=0)
    dd = np.diff(d)
    med = float(np.median(dd))
    uniform = bool(np.all(np.abs(dd - med) <= SPACING_TOLERANCE * max(med, 1e-6)))
    if not uniform:
        bad = [(i, float(x)) for i, x in enumerate(dd) if abs(x - med) > SPACING_TOLERANCE * med]
        kinds = "missing slices" if all(x > med for _, x in bad) else "non-uniform slice spacing"
        desc = ", ".join(f"slices {i}-{i + 1}: {x:.3f} mm" for i, x in bad[:10])
        warnings.append(
            f"{kinds}: median spacing {med:.3f} mm but {desc}; stored raw slices "
            "(the affine uses the mean step; resample with resample_gaps=True)"
        )
    step = steps.mean(axis=0)
    cosang = abs(float(step @ normal)) / max(float(np.linalg.norm(step)), 1e-12)
    tilt = math.degrees(math.acos(min(1.0, cosang)))
    if tilt > TILT_TOLERANCE_DEG:
        warnings.append(
            f"gantry tilt / sheared stack of {tilt:.2f} degrees: stored raw slices with "
            "the exact shear affine (resample_tilt=True resamples it like dcm2niix _Tilt)"
        )
    gaps = [
        (i, round(float(x), 4), max(1, round(float(x) / med) - 1))
        for i, x in enumerate(dd)
        if med > 0 and x > 1.5 * med
    ]
    return SliceGeometry(order, d, step, med, uniform, tilt, warnings, gaps)


__all__ = [
    "SliceGeometry",
    "analyse_positions",
    "lps_to_ras",
    "plane_affine_lps",
    "slice_normal",
]
