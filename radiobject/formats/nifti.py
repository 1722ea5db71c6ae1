"""NIfTI-1 / NIfTI-2 read and write with nibabel: raw dtype kept, scaling kept as metadata.

Reading is bounded and checked: only regular files are opened (a FIFO, device or socket is refused
before ``open``), the header's declared voxel bytes are checked against a memory budget and the
file size before any voxel is read, and a ``.nii.gz`` is decompressed completely by this module
(never partly by nibabel) so a wrong gzip CRC, a wrong length or a stream that ends early is a
``NiftiReadError`` naming the file, never a silently damaged volume.
"""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation

from radiobject.errors import NiftiReadError
from radiobject.formats.image import ImageData
from radiobject.formats.inputs import max_image_bytes, regular_file_size
from radiobject.formats.nifti_header import HEADER_KEY, capture_header, read_raw_header, write_nifti_image
from radiobject.geometry import to_canonical

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
#: Deflate cannot compress more than about 1032:1, so a gzip stream of ``n`` bytes holds at most this many times ``n``.
MAX_DEFLATE_RATIO = 1032
_READ_BLOCK = 4 << 20


#: Memory budget of one image read: a header declaring more voxel bytes is refused before reading.
#: Default ``min(16 GiB, half the physical memory)``; the environment variable
#: ``RADIOBJECT_MAX_IMAGE_BYTES`` overrides it, ``read_nifti(max_bytes=...)`` per call.
MAX_NIFTI_BYTES = max_image_bytes()


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


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def load_header(path: str | os.PathLike[str]) -> nib.Nifti1Image:
    """Opens a NIfTI lazily (header only); typed error naming the file when it is not one."""
    p = str(path)
    regular_file_size(p, NiftiReadError)
    try:
        img = nib.load(p)
    except (
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
        nib.spatialimages.HeaderTypeError,
        OSError,
        EOFError,
        ValueError,
        zlib.error,
    ) as exc:
        raise NiftiReadError(p, f"not a readable NIfTI file ({exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise NiftiReadError(p, f"not a NIfTI image (nibabel reads it as {type(img).__name__})")
    return img


def _declared_bytes(path: str, header: Any, max_bytes: int) -> int:
    """Voxel bytes the header declares, after checking dims, dtype and the memory budget."""
    shape = header.get_data_shape()
    if any(int(s) < 1 for s in shape):
        raise NiftiReadError(path, f"header dims {shape} contain an empty axis")
    dtype = header.get_data_dtype()
    if dtype.fields is not None:
        code = header.get_value_label("datatype") if hasattr(header, "get_value_label") else str(dtype)
        raise NiftiReadError(
            path,
            f"{code} (structured / RGB) NIfTI is not supported: the store holds scalar "
            f"voxels; convert it to a 4D uint8 image (one channel per colour)",
        )
    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if nbytes > max_bytes:
        raise NiftiReadError(
            path,
            f"header dims {shape} would need {nbytes / 2**30:.1f} GiB (limit "
            f"{max_bytes / 2**30:.1f} GiB; set RADIOBJECT_MAX_IMAGE_BYTES to raise it)",
        )
    return nbytes


def _check_size(path: str, img: nib.Nifti1Image, max_bytes: int) -> None:
    nbytes = _declared_bytes(path, img.header, max_bytes)
    size = regular_file_size(path, NiftiReadError)
    needed = int(getattr(img.dataobj, "offset", 0) or img.header.get_data_offset()) + nbytes
    if size < needed:
        raise NiftiReadError(path, f"truncated: header needs {needed} bytes, file has {size}")


def _header_metadata(hdr: Any, nifti2: bool, slope: float | None, inter: float | None) -> dict[str, Any]:
    if slope is not None and float(slope) == 1.0 and not inter:
        slope, inter = None, None
    xyz_unit, t_unit = hdr.get_xyzt_units()
    return {
        "format": "nifti2" if nifti2 else "nifti1",
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


def nifti_metadata(img: nib.Nifti1Image) -> dict[str, Any]:
    """Header facts kept with the volume: scaling, codes, units, intent, description."""
    # nibabel moves the file's scaling into the array proxy and blanks it in ``img.header``
    return _header_metadata(
        img.header,
        isinstance(img, nib.Nifti2Image),
        getattr(img.dataobj, "slope", None),
        getattr(img.dataobj, "inter", None),
    )


def _decompress(path: str, need: int, limit: int) -> bytearray:
    """The first ``need`` bytes of the gzip stream(s) of ``path``, read to the end: every member's
    CRC-32 and length are checked by zlib, and a stream that ends early, holds more than ``limit``
    bytes (a bomb) or is followed by garbage raises ``NiftiReadError``. Memory: ``need`` bytes plus
    one block, whatever the file holds."""
    out = bytearray(need)
    total = 0
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with open(path, "rb") as f:
            while True:
                data = f.read(_READ_BLOCK)
                if not data:
                    break
                while data:
                    if d.eof:  # another gzip member follows (or padding)
                        if not data.strip(b"\x00"):
                            data = b""
                            break
                        if data[:2] != b"\x1f\x8b":
                            raise NiftiReadError(path, "trailing garbage after the gzip stream")
                        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    chunk = d.decompress(data, _READ_BLOCK)
                    data = d.unconsumed_tail or (d.unused_data if d.eof else b"")
                    if total < need:
                        take = min(len(chunk), need - total)
                        out[total : total + take] = chunk[:take]
                    total += len(chunk)
                    if total > limit:
                        raise NiftiReadError(
                            path,
                            f"decompresses to more than the {limit} bytes its header "
                            f"declares (gzip bomb or lying header)",
                        )
        while not d.eof:  # flush what zlib still holds
            chunk = d.decompress(d.unconsumed_tail, _READ_BLOCK)
            if not chunk:
                break
            if total < need:
                take = min(len(chunk), need - total)
                out[total : total + take] = chunk[:take]
            total += len(chunk)
            if total > limit:
                raise NiftiReadError(path, f"decompresses to more than the {limit} bytes its header declares")
    except zlib.error as exc:  # wrong CRC / length, corrupt deflate data
        raise NiftiReadError(path, f"corrupt gzip stream ({exc})") from exc
    except OSError as exc:
        raise NiftiReadError(path, f"cannot read ({exc})") from exc
    if not d.eof:
        raise NiftiReadError(path, f"truncated gzip stream: it ends after {total} bytes, before its end marker and CRC")
    if total < need:
        raise NiftiReadError(path, f"truncated: header needs {need} bytes, the stream holds {total}")
    return out


def _read_gzip(path: str, max_bytes: int) -> tuple[np.ndarray, Any, bool]:
    """(raw voxels, header, is NIfTI-2) of a ``.nii.gz``, read and checked completely."""
    size = regular_file_size(path, NiftiReadError)
    img = load_header(path)
    hdr = img.header
    nbytes = _declared_bytes(path, hdr, max_bytes)
    offset = int(getattr(img.dataobj, "offset", 0) or hdr.get_data_offset())  # nibabel blanks vox_offset in img.header
    if nbytes + offset > size * MAX_DEFLATE_RATIO + 1024:
        raise NiftiReadError(
            path,
            f"header declares {nbytes + offset} bytes but a {size}-byte gzip stream "
            f"cannot hold more than {size * MAX_DEFLATE_RATIO} (truncated or lying header)",
        )
    slack = max(1 << 20, nbytes // 100)
    buf = _decompress(path, offset + nbytes, offset + nbytes + slack)
    header = type(hdr).from_fileobj(io.BytesIO(bytes(buf[:offset])))
    raw = np.ndarray(header.get_data_shape(), dtype=header.get_data_dtype(), buffer=buf, offset=offset, order="F")
    return raw, header, isinstance(img, nib.Nifti2Image)


def _check_finite(path: str, affine: np.ndarray, meta: dict[str, Any]) -> None:
    """A header whose affine or pixdim holds NaN / inf is damaged: refused, never stored."""
    if not np.isfinite(np.asarray(affine, dtype=np.float64)).all():
        raise NiftiReadError(
            path, f"damaged header: the affine holds non-finite values ({np.asarray(affine).tolist()})"
        )
    zooms = meta.get("zooms") or []
    if not np.isfinite(np.asarray(zooms, dtype=np.float64)).all():
        raise NiftiReadError(path, f"damaged header: pixdim holds non-finite values {zooms}")


def read_nifti(path: str | os.PathLike[str], *, reorient: bool = False, max_bytes: int | None = None) -> ImageData:
    """Reads a NIfTI file: raw (unscaled) voxels in native byte order, nibabel's affine choice.

    ``reorient=True`` reorders the axes to RAS+ (nibabel ``as_closest_canonical``) and records the
    original orientation in the metadata. ``scl_slope`` / ``scl_inter`` are kept in the metadata;
    ``Volume.to_numpy(scaled=True)`` applies them. ``max_bytes`` (default :data:`MAX_NIFTI_BYTES`)
    bounds the voxel bytes a header may declare; a gzip file is decompressed fully and its CRC checked.
    """
    p = str(path)
    budget = MAX_NIFTI_BYTES if max_bytes is None else int(max_bytes)
    regular_file_size(p, NiftiReadError)
    if _is_gzip(p):
        raw, header, nifti2 = _read_gzip(p, budget)
        slope, inter = header.get_slope_inter()
        meta = _header_metadata(header, nifti2, 1.0 if slope is None else slope, 0.0 if inter is None else inter)
        affine = header.get_best_affine()
        meta[HEADER_KEY] = capture_header(header, affine)
    else:
        img = load_header(p)
        _check_size(p, img, budget)
        meta = nifti_metadata(img)
        affine = img.affine
        meta[HEADER_KEY] = capture_header(read_raw_header(p, type(img.header)), affine)
        try:
            raw = np.asarray(img.dataobj.get_unscaled())  # type: ignore[attr-defined]  # nibabel's ArrayProxy
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise NiftiReadError(p, f"cannot read voxel data (truncated or corrupt: {exc})") from exc
    _check_finite(p, affine, meta)
    if raw.dtype.byteorder not in ("=", "|"):
        raw = raw.astype(raw.dtype.newbyteorder("="))
    if reorient:
        meta["original_orientation"] = "".join(nib.aff2axcodes(affine))
        ornt, affine, _ = to_canonical(affine, raw.shape)
        raw = apply_orientation(raw, ornt)
    return ImageData(np.ascontiguousarray(raw), affine, meta, source=os.path.abspath(p))


def write_nifti(
    path: str | os.PathLike[str], array: np.ndarray, affine: np.ndarray, metadata: dict[str, Any] | None = None
) -> None:
    """Writes a NIfTI-1 (or NIfTI-2 when the metadata says so): dtype and raw voxels kept, the
    header rebuilt from the metadata (``formats.nifti_header``: a NIfTI read by this module comes
    back field for field; other metadata give sform = qform = ``affine`` with its codes, units and
    ``scl_slope`` / ``scl_inter``)."""
    write_nifti_image(path, array, affine, metadata)
