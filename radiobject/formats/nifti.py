"""NIfTI-1 / NIfTI-2 read and write with nibabel: raw dtype kept, scaling kept as metadata."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation

from radiobject.errors import NiftiReadError
from radiobject.formats.image import ImageData
from radiobject.geometry import to_canonical

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
#: Refuse headers whose voxel data would exceed this many bytes (corrupt dims) unless asked.
MAX_NIFTI_BYTES = 64 << 30


def is_nifti_path(path: str | os.PathLike[str]) -> bool:
    """True for ``.nii`` / ``.nii.gz`` names."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike[str]) -> str:
    """``/a/sub-01_T1w.nii.gz`` -> ``sub-01_T1w``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def load_header(path: str | os.PathLike[str]) -> nib.Nifti1Image:
    """Opens a NIfTI lazily (header only); typed error naming the file when it is not one."""
    p = str(path)
    if not os.path.exists(p):
        raise NiftiReadError(p, "file does not exist")
    try:
        img = nib.load(p)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as exc:
        raise NiftiReadError(p, f"not a readable NIfTI file ({exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise NiftiReadError(p, f"not a NIfTI image (nibabel reads it as {type(img).__name__})")
    return img


def _check_size(path: str, img: nib.Nifti1Image, max_bytes: int) -> None:
    shape = img.header.get_data_shape()
    if any(int(s) < 1 for s in shape):
        raise NiftiReadError(path, f"header dims {shape} contain an empty axis")
    nbytes = int(np.prod(shape, dtype=np.float64)) * img.header.get_data_dtype().itemsize
    if nbytes > max_bytes:
        raise NiftiReadError(path, f"header dims {shape} would need {nbytes / 2**30:.1f} GiB (limit {max_bytes / 2**30:.0f} GiB)")
    if not path.lower().endswith(".gz"):
        needed = int(img.header.get_data_offset()) + nbytes
        if os.path.getsize(path) < needed:
            raise NiftiReadError(path, f"truncated: header needs {needed} bytes, file has {os.path.getsize(path)}")


def nifti_metadata(img: nib.Nifti1Image) -> dict[str, Any]:
    """Header facts kept with the volume: scaling, codes, units, intent, description."""
    hdr = img.header
    # nibabel moves the file's scaling into the array proxy and blanks it in ``img.header``
    slope = getattr(img.dataobj, "slope", None)
    inter = getattr(img.dataobj, "inter", None)
    if slope is not None and float(slope) == 1.0 and not inter:
        slope, inter = None, None
    xyz_unit, t_unit = hdr.get_xyzt_units()
    return {
        "format": "nifti2" if isinstance(img, nib.Nifti2Image) else "nifti1",
        "scl_slope": None if slope is None else float(slope),
        "scl_inter": None if inter is None else float(inter),
        "sform_code": int(hdr["sform_code"]),
        "qform_code": int(hdr["qform_code"]),
        "xyz_units": xyz_unit,
        "t_units": t_unit,
        "zooms": [float(z) for z in hdr.get_zooms()],
        "intent": str(hdr.get_intent()[0]),
        "descrip": hdr["descrip"].tobytes().rstrip(b"\x00").decode("latin-1"),
    }


def read_nifti(
    path: str | os.PathLike[str], *, reorient: bool = False, max_bytes: int = MAX_NIFTI_BYTES
) -> ImageData:
    """Reads a NIfTI file: raw (unscaled) voxels in native byte order, nibabel's affine choice.

    ``reorient=True`` reorders the axes to RAS+ (nibabel ``as_closest_canonical``) and records the
    original orientation in the metadata. ``scl_slope`` / ``scl_inter`` are kept in the metadata;
    ``Volume.to_numpy(scaled=True)`` applies them.
    """
    p = str(path)
    img = load_header(p)
    _check_size(p, img, max_bytes)
    meta = nifti_metadata(img)
    try:
        raw = np.asarray(img.dataobj.get_unscaled())
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise NiftiReadError(p, f"cannot read voxel data (truncated or corrupt: {exc})") from exc
    if raw.dtype.byteorder not in ("=", "|"):
        raw = raw.astype(raw.dtype.newbyteorder("="))
    affine = img.affine
    if reorient:
        meta["original_orientation"] = "".join(nib.aff2axcodes(affine))
        ornt, affine, _ = to_canonical(affine, raw.shape)
        raw = apply_orientation(raw, ornt)
    return ImageData(np.ascontiguousarray(raw), affine, meta, source=os.path.abspath(p))


def write_nifti(
    path: str | os.PathLike[str], array: np.ndarray, affine: np.ndarray, metadata: dict[str, Any] | None = None
) -> None:
    """Writes a NIfTI-1 (or NIfTI-2 when the metadata says so) with sform = qform = ``affine``.

    The dtype is kept; recorded ``scl_slope`` / ``scl_inter`` are written back to the header.
    """
    meta = metadata or {}
    cls = nib.Nifti2Image if meta.get("format") == "nifti2" else nib.Nifti1Image
    img = cls(np.asarray(array), np.asarray(affine, dtype=np.float64))
    img.header.set_data_dtype(np.asarray(array).dtype)
    if meta.get("xyz_units") or meta.get("t_units"):
        img.header.set_xyzt_units(meta.get("xyz_units") or "unknown", meta.get("t_units") or "unknown")
    zooms = meta.get("zooms")
    if zooms and len(zooms) == np.asarray(array).ndim:
        img.header.set_zooms(zooms)
    img.set_sform(affine, code=int(meta.get("sform_code") or 1))
    img.set_qform(affine, code=int(meta.get("qform_code") or 1))
    if meta.get("scl_slope") is not None:
        img.header.set_slope_inter(meta["scl_slope"], meta.get("scl_inter") or 0.0)
    nib.save(img, str(path))
