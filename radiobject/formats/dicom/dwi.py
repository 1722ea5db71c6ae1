"""Diffusion gradients (b-values and directions) of a DWI series, in the stored image's frame.

Sources, per volume (the first image of each volume; the others must agree):

* DICOM standard ``DiffusionBValue`` (0018,9087) and ``DiffusionGradientOrientation`` (0018,9089),
  top level or in the MR Diffusion Sequence of enhanced per-frame / shared functional groups
  (Philips, Canon, UIH, Siemens XA, Hitachi...): patient (LPS) coordinates.
* Siemens CSA image header ``B_value`` / ``DiffusionGradientDirection`` (nibabel's CSA parser),
  else the ``SIEMENS MR HEADER`` private tags (0019,100C) / (0019,100E): patient (LPS) coordinates.
* GE private tags: b-value = first value of (0043,1039) modulo 10^9; direction (0019,10BB/BC/BD)
  in the logical (image) frame, turned into patient coordinates as dcm2niix does (phase
  encoding (0018,1312), slice orientation flips; without (0018,1312) dcm2niix keeps the raw values
  and so does this module, with a warning).
* Canon / Toshiba classic (single-frame) images: (0018,9089) holds the direction in the image
  frame, turned into patient coordinates like GE's (dcm2niix does the same; enhanced Canon
  images use patient coordinates in the functional groups).
* Philips private b-value (2001,1003) when the standard one is absent.

Directions are stored FSL-style, as dcm2niix writes ``.bvec``: components along the stored
array's voxel axes (``i`` = columns, ``j`` = rows, ``k`` = slices), x negated when the affine's
determinant is positive; b = 0 volumes get ``(0, 0, 0)``; GE vectors shorter than 1 (b scaled by
``|g|^2``) are rescaled like dcm2niix (b rounded to a multiple of 5).
"""

from __future__ import annotations

import math
import os
import warnings as _warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

with _warnings.catch_warnings():  # nibabel.nicom warns that its readers are experimental
    _warnings.simplefilter("ignore")
    from nibabel.nicom import csareader

from radiobject.formats.dicom.frames import Frame, _num

CONVENTION = "FSL: along the stored array's voxel axes (i, j, k); x negated when det(affine) > 0"
_GE_B = (0x0043, 0x1039)
_GE_DIR = ((0x0019, 0x10BB), (0x0019, 0x10BC), (0x0019, 0x10BD))
_PHILIPS_B = (0x2001, 0x1003)


@dataclass
class Gradient:
    """One volume's diffusion weighting.

    Attributes:
        bval: b-value (s/mm^2).
        lps: unit direction in patient LPS coordinates ((0, 0, 0) for b = 0 / no direction).
        source: where it came from (``dicom``, ``siemens-csa``, ``siemens-private``, ``ge``,
            ``philips-private``).
    """

    bval: float
    lps: np.ndarray
    source: str


def _diffusion_item(ds: Dataset, frame: int | None) -> Dataset | None:
    groups: list[Any] = []
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        per = ds.PerFrameFunctionalGroupsSequence
        if frame < len(per):
            groups.append(per[frame])
    if "SharedFunctionalGroupsSequence" in ds:
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for g in groups:
        if "MRDiffusionSequence" in g and len(g.MRDiffusionSequence):
            return g.MRDiffusionSequence[0]
    return None


def _standard(item: Dataset) -> Gradient | None:
    if "DiffusionBValue" not in item:
        return None
    b = _num(item.DiffusionBValue, float("nan"))
    if math.isnan(b):
        return None
    vec = None
    if "DiffusionGradientDirectionSequence" in item and len(item.DiffusionGradientDirectionSequence):
        vec = item.DiffusionGradientDirectionSequence[0].get("DiffusionGradientOrientation")
    if vec is None:
        vec = item.get("DiffusionGradientOrientation")
    return Gradient(b, _unit(vec), "dicom")


def _unit(vec: Any) -> np.ndarray:
    if vec is None:
        return np.zeros(3)
    v = np.asarray([float(x) for x in vec][:3], dtype=np.float64)
    n = float(np.linalg.norm(v))
    return v / n if len(v) == 3 and n > 1e-6 else np.zeros(3)


def _siemens(ds: Dataset) -> Gradient | None:
    try:
        csa = csareader.get_csa_header(ds, "image")
    except Exception:  # noqa: BLE001 - a damaged CSA header means: no CSA gradients
        return None
    if not csa:
        return None
    try:
        b = csareader.get_b_value(csa)
    except Exception:
        return None
    if b is None:
        return None
    try:
        g = csareader.get_g_vector(csa)
    except Exception:
        g = None
    return Gradient(float(b), _unit(g), "siemens-csa")


def _siemens_private(ds: Dataset) -> Gradient | None:
    """Siemens ``SIEMENS MR HEADER`` (0019,100C) B_value and (0019,100E) gradient (LPS)."""
    creator = str(ds.get((0x0019, 0x0010)).value if (0x0019, 0x0010) in ds else "SIEMENS MR HEADER")
    if "SIEMENS MR HEADER" not in creator.upper() or (0x0019, 0x100C) not in ds:
        return None
    raw = ds[0x0019, 0x100C].value
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace").strip("\x00 ")
    b = _num(raw, float("nan"))
    if math.isnan(b):
        return None
    vec = ds[0x0019, 0x100E].value if (0x0019, 0x100E) in ds else None
    if isinstance(vec, bytes):
        vec = np.frombuffer(vec, dtype="<f8")[:3] if len(vec) >= 24 else None
    return Gradient(b, _unit(vec), "siemens-private")


def _ge_raw(ds: Dataset) -> tuple[float, np.ndarray] | None:
    if _GE_B not in ds:
        return None
    raw = ds[_GE_B].value
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    if isinstance(raw, str):
        raw = raw.strip("\x00 ").split("\\")
    elif not isinstance(raw, (list, tuple, MultiValue)):
        raw = [raw]
    if not len(raw):
        return None
    first = raw[0]
    b = _num(first, float("nan"))
    if math.isnan(b):
        return None
    b = float(int(b) % 1_000_000_000)
    comps = []
    for tag in _GE_DIR:
        v = ds[tag].value if tag in ds else 0.0
        if isinstance(v, bytes):
            v = v.decode("ascii", "replace")
        comps.append(_num(v, 0.0))
    return b, np.asarray(comps, dtype=np.float64)


def _ge_to_lps(v: np.ndarray, ds: Dataset, iop: np.ndarray, notes: list[str]) -> np.ndarray:
    """dcm2niix ``geCorrectBvecs`` on the logical vector, then its frame -> patient LPS."""
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    ped = str(ds.get("InPlanePhaseEncodingDirection", "")).upper()[:1]
    b = v.copy()
    if ped in ("R", "C"):
        axis = int(np.argmax(np.abs(normal)))  # 0 sagittal, 1 coronal, 2 axial
        flp = {0: (1, 1, 0), 1: (0, 1, 1), 2: (0, 0, 1)}[axis]
        b = np.array([-x if f else x for x, f in zip(b, flp, strict=True)])
        if ped == "R":  # rows swizzled after the flips (dcm2niix v1.0.20260724's order)
            b = np.array([b[1], -b[0], b[2]])
        b[1] = -b[1]
        b = -b
    else:
        msg = (
            "GE gradients kept as stored (no InPlanePhaseEncodingDirection (0018,1312) to orient "
            "them; dcm2niix does the same)"
        )
        if msg not in notes:
            notes.append(msg)
    # dcm2niix's frame: columns row, -col (rows flipped), +normal
    return b[0] * row - b[1] * col + b[2] * normal


def _ge(ds: Dataset, iop: np.ndarray, notes: list[str]) -> Gradient | None:
    got = _ge_raw(ds)
    if got is None:
        return None
    b, v = got
    length = float(np.linalg.norm(v))
    if b <= 1e-6 or length <= 1e-6:
        return Gradient(b, np.zeros(3), "ge")
    if 0.03 < length < 0.97:  # b scaled by |g|^2 (dcm2niix issues 163, 245)
        bt = b * length * length
        new_b = 5.0 if 0 < bt < 5 else float(int((bt + 2.5) / 5) * 5)
        b = new_b
    lps = _ge_to_lps(v / length, ds, iop, notes)
    return Gradient(b, _unit(lps), "ge")


def frame_gradient(ds: Dataset, frame: Frame, notes: list[str]) -> Gradient | None:
    """The diffusion weighting of one frame (None when the frame carries none)."""
    item = _diffusion_item(ds, frame.frame)
    if item is not None:
        g = _standard(item)
        if g is not None:
            return g
    maker = str(ds.get("Manufacturer", "")).upper()
    g = _standard(ds)
    if g is not None:
        if ("CANON" in maker or "TOSHIBA" in maker) and np.any(g.lps):
            # classic Canon images store (0018,9089) in the image frame, as GE does (dcm2niix)
            g = Gradient(g.bval, _unit(_ge_to_lps(g.lps, ds, frame.iop, notes)), "canon-classic")
        return g
    if "SIEMENS" in maker:
        g = _siemens(ds) if (0x0029, 0x1010) in ds else None
        if g is None:
            g = _siemens_private(ds)
        if g is not None:
            return g
    if "GE" in maker.split() or maker.startswith("GE"):
        g = _ge(ds, frame.iop, notes)
        if g is not None:
            return g
    if "PHILIPS" in maker and _PHILIPS_B in ds:
        b = _num(ds[_PHILIPS_B].value, float("nan"))
        if not math.isnan(b):
            return Gradient(b, np.zeros(3), "philips-private")
    return None


def series_diffusion(
    volumes: list[list[Frame]], datasets: list[Dataset], affine_ras: np.ndarray
) -> tuple[dict[str, Any] | None, list[str]]:
    """``metadata["diffusion"]`` of a series (None when it is not diffusion weighted) and warnings.

    Args:
        volumes: per volume (t), its frames (one per slice position).
        datasets: the series' data sets (indexed by ``Frame.ds_index``).
        affine_ras: the stored voxel -> RAS affine (bvecs are rotated into its frame).
    """
    notes: list[str] = []
    grads: list[Gradient | None] = []
    for frames in volumes:
        gs = [frame_gradient(datasets[f.ds_index], f, notes) for f in frames]
        g0 = gs[0]
        if g0 is not None and any(
            g is None or abs(g.bval - g0.bval) > 1e-3 or np.abs(g.lps - g0.lps).max() > 1e-4 for g in gs[1:]
        ):
            notes.append("diffusion weighting differs between slices of one volume: first slice's kept")
        grads.append(g0)
    if all(g is None for g in grads) or not any(g is not None and g.bval > 0 for g in grads):
        return None, []
    if any(g is None for g in grads):
        missing = [i for i, g in enumerate(grads) if g is None]
        notes.append(f"no diffusion information for volume(s) {missing[:10]}: stored as b = 0")
    rot = np.asarray(affine_ras, dtype=np.float64)[:3, :3]
    rot = rot / np.linalg.norm(rot, axis=0)
    inv = np.linalg.inv(rot)
    flip_x = float(np.linalg.det(rot)) > 0
    bvals: list[float] = []
    bvecs: list[list[float]] = []
    lps: list[list[float]] = []
    for g in grads:
        b = 0.0 if g is None else float(g.bval)
        v = np.zeros(3) if g is None or b <= 0 else g.lps
        ras = np.array([-v[0], -v[1], v[2]])
        vox = inv @ ras
        n = float(np.linalg.norm(vox))
        vox = vox / n if n > 1e-9 else np.zeros(3)
        if flip_x:
            vox[0] = -vox[0]
        vox = np.where(np.abs(vox) < 1e-12, 0.0, vox)
        bvals.append(round(b, 6))
        bvecs.append([round(float(x), 8) for x in vox])
        lps.append([round(float(x), 8) for x in v])
    sources = sorted({g.source for g in grads if g is not None})
    return {
        "bvals": bvals,
        "bvecs": bvecs,
        "gradients_lps": lps,
        "convention": CONVENTION,
        "source": "+".join(sources),
    }, notes


def fsl_text(diffusion: dict[str, Any]) -> tuple[str, str]:
    """``(bval, bvec)`` file contents (FSL layout: one row of b-values; 3 rows x, y, z)."""
    bvals = diffusion["bvals"]
    vecs = np.asarray(diffusion["bvecs"], dtype=np.float64).reshape(-1, 3)

    def fmt(x: float) -> str:
        return f"{x:.6g}" if x != 0 else "0"

    bval = " ".join(fmt(float(b)) for b in bvals) + "\n"
    bvec = "".join(" ".join(fmt(float(x)) for x in vecs[:, a]) + "\n" for a in range(3))
    return bval, bvec


def write_fsl_gradients(metadata: dict[str, Any], nifti_path: str | os.PathLike[str]) -> list[str]:
    """Write ``<stem>.bval`` / ``<stem>.bvec`` next to an exported NIfTI when ``metadata`` has them.

    Each file is written to a temporary name and renamed, so a crash leaves no partial file.
    Returns the paths written (empty when the volume is not diffusion weighted).
    """
    diffusion = metadata.get("diffusion") if isinstance(metadata, dict) else None
    if not diffusion or "bvals" not in diffusion or "bvecs" not in diffusion:
        return []
    path = os.fspath(nifti_path)
    stem = path[: -len(".nii.gz")] if path.endswith(".nii.gz") else os.path.splitext(path)[0]
    written = []
    for suffix, text in zip((".bval", ".bvec"), fsl_text(diffusion), strict=True):
        target = stem + suffix
        tmp = f"{target}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(text)
        os.replace(tmp, target)
        written.append(target)
    return written


__all__ = ["CONVENTION", "Gradient", "frame_gradient", "fsl_text", "series_diffusion", "write_fsl_gradients"]
