"""Gantry-tilt correction and slice-spacing equalisation, following dcm2niix ``_Tilt`` / ``_Eq``.

A CT acquired with gantry tilt has image planes tilted against the table axis, so consecutive
slices are offset within the plane along the DICOM row direction (the ``j`` axis here). The raw
stack is stored exactly by the reader with a sheared affine; :func:`correct_tilt` instead moves each
slice along ``j`` by its in-plane offset so that the slice axis becomes the plane normal, and
:func:`equalise_spacing` then puts slices at uneven distances on an even grid (dcm2niix writes
both steps as ``_Tilt_Eq``).

Both reproduce dcm2niix (v1.0.20260724) step by step: it works on images whose rows are flipped,
widens the rows by ``ceil(|offset of the last slice|)``, samples with linear interpolation
weighted ``ceil(o) - o``, rounds half away from zero in stored-value units, fills with
PixelPaddingValue (nearest neighbour next to padding) or the darkest value; spacing is equalised
to ``min(ceil(range / smallest step) + 1, 2 n)`` slices.

One difference is deliberate: for a tilt whose in-plane offset grows along ``+j`` ("negative" tilt
in dcm2niix's terms) dcm2niix moves the origin by the second *row* of its matrix instead of the
second *column*, and by the whole number of added rows instead of the fractional offset of the
first slice; its ``_Tilt`` image then lies millimetres to centimetres away from where the DICOM
puts the anatomy. ``origin="exact"`` (the default) gives the origin that puts every resampled
voxel where the DICOM geometry says it is; ``origin="dcm2niix"`` reproduces dcm2niix's origin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: in-plane offset along the DICOM column direction (i voxels) above which a series is not tilted
#: about the row axis and cannot be corrected by shifting rows
MAX_COLUMN_SHIFT_VOXELS = 0.01
#: dcm2niix's absolute slice-distance tolerance (mm, ``kSliceTolerance``) for "spacing varies"
SLICE_TOLERANCE_MM = 0.2


def c_round(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (C ``round``), unlike NumPy's half-to-even ``rint``."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


@dataclass
class TiltPlan:
    """How each slice is shifted: the facts recorded in a volume's metadata.

    Attributes:
        offsets: per-slice shift in dcm2niix's flipped-row frame (rows), ``Offset`` in dcm2niix.
        rows_added: rows added to hold every shifted slice.
        row_shift_per_mm: in-plane shift of a slice per mm of distance along the normal (rows).
        distances: slice distances along the normal from the first slice (mm).
        negative: dcm2niix's negative-tilt case (offsets grow along +j).
        residual_rows: largest distance (rows) of a slice's in-plane offset from a straight
            tilted stack (position jitter; 0 for an ideal one, where this equals dcm2niix's shift).
    """

    offsets: np.ndarray
    rows_added: int
    row_shift_per_mm: float
    distances: np.ndarray
    negative: bool
    residual_rows: float = 0.0


def plan_tilt(positions: np.ndarray, iop: np.ndarray, pixel_spacing: tuple[float, float]) -> TiltPlan:
    """Per-slice row shifts from sorted ImagePositionPatient values (LPS) and the orientation.

    Raises:
        ValueError: the in-plane offsets have a component along the column direction (the stack
            is not tilted about the row axis), which a row shift cannot remove.
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    iop = np.asarray(iop, dtype=np.float64)
    c0, c1 = iop[:3] * pixel_spacing[1], iop[3:] * pixel_spacing[0]
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    rel = pos - pos[0]
    dist = rel @ normal
    inplane = rel - np.outer(dist, normal)
    sj = inplane @ c1 / float(c1 @ c1)
    si = inplane @ c0 / float(c0 @ c0)
    if np.abs(si).max() > MAX_COLUMN_SHIFT_VOXELS:
        raise ValueError(
            f"slices are offset along the image columns too (up to {np.abs(si).max():.3f} voxels): "
            "not a gantry tilt about the row axis"
        )
    last = float(sj[-1])
    # each slice is shifted by its own offset (dcm2niix: linear in the distance along the normal,
    # the same for a straight stack); how far the slices are from that line is recorded
    per_mm = float(last / dist[-1]) if abs(dist[-1]) > 1e-9 else 0.0
    residual = float(np.abs(sj - per_mm * dist).max())
    # dcm2niix: pxOffset = ceil(|GNTtanPx * maxSliceMM|) computed in float32
    pad = int(math.ceil(float(np.float32(abs(last)))))
    negative = last > 0  # in the flipped frame the offsets are -sj: dcm2niix's GNTtanPx < 0
    offsets = -sj + (last if negative else 0.0)
    # dcm2niix's sliceMMarray: cos(tilt) * |P_s - P_0| in float32 (sets the _Eq weights)
    rel32 = (pos.astype(np.float32) - pos[0].astype(np.float32)).astype(np.float32)
    cos_t = np.float32(abs(float(dist[-1])) / max(float(np.linalg.norm(rel[-1])), 1e-12))
    dist32 = (cos_t * np.sqrt((rel32 * rel32).sum(axis=1, dtype=np.float32))).astype(np.float64)
    return TiltPlan(offsets, pad, -per_mm, dist32 * np.sign(dist[-1] or 1.0), negative, residual)


def _blend(
    lo: np.ndarray, hi: np.ndarray, frac_hi: float, slope: float | None, intercept: float | None, integer: bool
) -> np.ndarray:
    """``round(lo * (1 - f) + hi * f)`` exactly as dcm2niix computes it: float32, in stored units.

    dcm2niix keeps stored integers plus a scaling, so it rounds before the modality LUT; the
    result is mapped back through the LUT (``slope`` / ``intercept``; None: values are stored
    units, integers are rounded and floats are not).
    """
    known = slope is not None and intercept is not None
    # the ignore below: known means neither is None; mypy does not narrow through the flag
    s, b = (float(slope), float(intercept)) if known else (1.0, 0.0)  # type: ignore[arg-type]
    fh = np.float32(frac_hi)
    fl = np.float32(1.0) - fh
    st_lo = ((lo - b) / s).astype(np.float32)
    st_hi = ((hi - b) / s).astype(np.float32)
    val = st_lo * fl + st_hi * fh
    if known or integer:
        val = c_round(val)
    return val.astype(np.float64) * s + b


def correct_tilt(
    data: np.ndarray,
    plan: TiltPlan,
    *,
    padding_value: float | None = None,
    slope: float | None = None,
    intercept: float | None = None,
) -> np.ndarray:
    """Shift every slice of ``data`` (x, y, z[, ...]) along y as dcm2niix ``nii_saveNII3Dtilt`` does.

    Args:
        data: raw sorted slices.
        plan: from :func:`plan_tilt`.
        padding_value: PixelPaddingValue after the modality LUT (None: fill with the darkest value).
        slope, intercept: the uniform modality LUT (values are rounded in stored units); None for
            data without one (integers are rounded, floats are not).

    Returns:
        The resampled array, ``plan.rows_added`` rows wider in y, same dtype.
    """
    nx, ny, nz = data.shape[:3]
    ny_out = ny + plan.rows_added
    flipped = np.asarray(data)[:, ::-1]
    fill = float(padding_value) if padding_value is not None else (float(data.min()) if data.size else 0.0)
    out = np.full((nx, ny_out) + data.shape[2:], fill, dtype=np.float64)
    integer = np.issubdtype(data.dtype, np.integer)
    r = np.arange(ny_out, dtype=np.float64)
    for s in range(nz):
        off32 = np.float32(plan.offsets[s])
        frac_hi = float(np.float32(np.ceil(off32)) - off32)
        r_in = r - float(off32)
        ok = (r_in >= 0) & (r_in < ny)
        lo = np.floor(r_in[ok]).astype(int)
        hi = np.minimum(lo + 1, ny - 1)
        sl = flipped[:, :, s].astype(np.float64)
        v_lo, v_hi = sl[:, lo], sl[:, hi]
        val = _blend(v_lo, v_hi, frac_hi, slope, intercept, integer)
        if padding_value is not None:  # dcm2niix issue 262: nearest neighbour next to padding
            near = v_hi if frac_hi >= 0.5 else v_lo
            val = np.where((v_lo == padding_value) | (v_hi == padding_value), near, val)
        out[:, ok, s] = val
    out = out[:, ::-1]
    return _cast(out, data.dtype)


def tilt_affine(affine_ras: np.ndarray, plan: TiltPlan, spacing: float, origin: str = "exact") -> np.ndarray:
    """The voxel -> RAS affine of :func:`correct_tilt`'s output.

    Args:
        affine_ras: the raw (sheared) affine: columns i, j of the image plane, origin = first voxel.
        plan: the tilt plan.
        spacing: slice spacing along the normal (mm) for the slice column.
        origin: ``"exact"`` (voxels where the DICOM puts them) or ``"dcm2niix"`` (its origin).
    """
    a = np.asarray(affine_ras, dtype=np.float64)
    ci, cj = a[:3, 0], a[:3, 1]
    normal = np.cross(ci, cj)
    normal /= np.linalg.norm(normal)
    if float(normal @ a[:3, 2]) < 0:
        normal = -normal
    new = a.copy()
    new[:3, 2] = normal * spacing
    pad = plan.rows_added
    if origin == "exact":
        new[:3, 3] = a[:3, 3] + (float(plan.offsets[0]) - pad) * cj
    elif origin == "dcm2niix":
        new[:3, 3] = a[:3, 3] - pad * cj
        if plan.negative:  # adjustOriginForNegativeTilt: subtracts the flipped matrix's 2nd row
            # its slice column then is the normal times the first slice distance (pixdim[3])
            flipped = np.column_stack([ci, -cj, normal * abs(float(plan.distances[1]))])
            new[:3, 3] -= pad * flipped[1]
    else:
        raise ValueError(f"origin must be 'exact' or 'dcm2niix', not {origin!r}")
    return new


def spacing_varies(distances: np.ndarray) -> bool:
    """dcm2niix's test: a step differs from the first by more than 0.2 mm."""
    d = np.diff(np.asarray(distances, dtype=np.float64))
    return bool(len(d) > 1 and np.any(np.abs(d - d[0]) > SLICE_TOLERANCE_MM))


def equalise_spacing(
    data: np.ndarray,
    distances: np.ndarray,
    *,
    slope: float | None = None,
    intercept: float | None = None,
) -> tuple[np.ndarray, float]:
    """Resample slices at ascending ``distances`` (mm from the first) onto an even grid like dcm2niix.

    ``min(ceil(range / smallest step) + 1, 2 n)`` slices from the first to the last position;
    each output slice is the linear blend of the two raw slices around it (the upper one alone at
    either end), rounded in stored units like :func:`correct_tilt`.

    Returns:
        ``(resampled, spacing_mm)``.
    """
    d = np.asarray(distances, dtype=np.float32)
    d = d - d[0]
    n = len(d)
    steps = np.diff(d)
    mn = float(np.min(steps[steps > 0]))
    rng = float(d[-1])
    count = min(int(math.ceil(np.float32(rng) / np.float32(mn))) + 1, 2 * n)
    spacing = float(np.float32(rng) / np.float32(count - 1))
    integer = np.issubdtype(data.dtype, np.integer)
    out = np.empty(data.shape[:2] + (count,) + data.shape[3:], dtype=np.float64)
    src = np.asarray(data)
    for s in range(count):
        x = float(np.float32(s) * np.float32(spacing))
        hi = 0
        while hi < n - 1 and float(d[hi]) < x:
            hi += 1
        lo = max(hi - 1, 0)
        m_hi, m_lo = float(d[hi]), float(d[lo])
        if m_hi == m_lo or x > m_hi:
            out[:, :, s] = src[:, :, hi]
        else:
            f = float((np.float32(x) - np.float32(m_lo)) / (np.float32(m_hi) - np.float32(m_lo)))
            out[:, :, s] = _blend(
                src[:, :, lo].astype(np.float64), src[:, :, hi].astype(np.float64), f, slope, intercept, integer
            )
    return _cast(out, data.dtype), spacing


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(values, info.min, info.max).astype(dtype)
    return values.astype(dtype)


__all__ = [
    "TiltPlan",
    "c_round",
    "correct_tilt",
    "equalise_spacing",
    "plan_tilt",
    "spacing_varies",
    "tilt_affine",
]
