"""NIfTI-1 / NIfTI-2 read and write with nibabel: raw dtype kept, scaling kept as metadata.

Reading is bounded and checked: only regular files are opened (a FIFO, device or socket is refused
before ``open``), the header's declared voxel bytes are checked against a memory budget and the
file size before any voxel is read, and a ``.nii.gz`` is decompressed completely by this module
(never partly by nibabel) so a wrong gzip CRC, a wrong length or a stream that ends early is a
``NiftiReadError`` naming the file, never a silently damaged volume.

The header's layout is checked from its bytes before nibabel parses it (:func:`check_layout`):
``vox_offset`` must be a finite number past the header and its 4-byte extender (352 for NIfTI-1,
544 for NIfTI-2) and inside the file; each header extension must declare a positive multiple of 16
bytes (``esize``) and end at or before ``vox_offset``, so an extension never overlaps the voxel data
(nibabel would read it, and a ``vox_offset`` inside the header, silently); the voxel data must end
inside the file (the decompressed stream for ``.nii.gz``). nibabel's header fix-ups (``pixdim[0] (qfac)
should be 1 ...``) are not logged on stderr: ``metadata["header_fixes"]`` and ``radiobject.formats.nifti``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import math
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.batteryrunners import BatteryRunner
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError, HeaderTypeError

from radiobject.errors import NiftiReadError
from radiobject.formats.image import ImageData
from radiobject.formats.inputs import max_image_bytes, regular_file_size
from radiobject.formats.nifti_header import HEADER_KEY, capture_header, read_raw_header, write_nifti_image
from radiobject.formats.nifti_orient import reorient_to_ras

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
#: Deflate cannot compress more than about 1032:1, so a gzip stream of ``n`` bytes holds at most this many times ``n``.
MAX_DEFLATE_RATIO = 1032
_READ_BLOCK = 4 << 20
#: More header extensions than this in one file are refused (a chain of tiny extensions is not a header).
MAX_EXTENSIONS = 65536
#: sizeof_hdr -> (NIfTI version, offset and struct code of vox_offset, offset of magic, single-file magic)
_LAYOUTS: dict[int, tuple[int, int, str, int, bytes]] = {
    348: (1, 108, "f", 344, b"n+1\x00"),
    540: (2, 168, "q", 4, b"n+2\x00\r\n\x1a\n"),
}


_LOG = logging.getLogger(__name__)
_LOG.addHandler(logging.NullHandler())  # shown where the application sets up logging, never by the last resort
_READING = threading.local()  # per thread: how deep inside this module's reads (nibabel's records dropped)
logging.getLogger("nibabel.global").addFilter(lambda record: not getattr(_READING, "n", 0))  # its stderr handler


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """nibabel's log records are dropped in this thread meanwhile (also a decorator: ``@_quiet()``)."""
    _READING.n = getattr(_READING, "n", 0) + 1
    try:
        yield
    finally:
        _READING.n -= 1


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


def check_layout(path: str | os.PathLike[str], max_bytes: int | None = None) -> None:
    """Checks a single-file NIfTI's header from its bytes, before nibabel parses it: the voxel
    bytes its dims declare (non-empty axes, scalar type, at most ``max_bytes``, default the budget
    of one image read at the time of the call, ``formats.inputs.max_image_bytes()``), then where
    header, extensions and voxel data lie (module docstring). Reads the header and the 8-byte head
    of each extension only. ``NiftiReadError`` naming the file and the field (dims, ``vox_offset``,
    an extension's ``esize``).

    What this does not decide (not a NIfTI, a header cut short, a damaged gzip stream) is left to
    the reader, which reports it."""
    p = str(path)
    size = regular_file_size(p, NiftiReadError)
    gz = _is_gzip(p)
    try:
        with gzip.open(p, "rb") if gz else open(p, "rb") as f:
            _check_layout(p, f, size, gz, max_image_bytes() if max_bytes is None else int(max_bytes))
    except (OSError, EOFError, zlib.error, HeaderDataError):
        return  # an unreadable stream or header: the reader names the cause


def _check_layout(path: str, f: Any, size: int, gz: bool, max_bytes: int) -> None:
    head = f.read(548)
    for order in "<>":
        layout = _LAYOUTS.get(struct.unpack(f"{order}i", head[:4])[0]) if len(head) >= 4 else None
        if layout is not None:
            break
    else:
        return  # not a NIfTI header: nibabel says so
    hsize = struct.unpack(f"{order}i", head[:4])[0]
    version, at, code, magic_at, magic = layout
    if len(head) < hsize + 4 or head[magic_at : magic_at + len(magic)] != magic:
        return  # cut short, or not a single-file (n+1 / n+2) NIfTI
    cls = nib.Nifti2Header if version == 2 else nib.Nifti1Header
    try:
        hdr = cls(head[:hsize], endianness=order, check=False)
        hdr.get_data_dtype(), hdr.get_data_shape()
    except (HeaderDataError, KeyError, ValueError, TypeError):
        return  # an unknown data type or bad dims: nibabel names it
    nbytes = _declared_bytes(path, hdr, max_bytes)
    (declared,) = struct.unpack(f"{order}{code}", head[at : at + struct.calcsize(code)])
    if not math.isfinite(declared):
        raise NiftiReadError(path, f"damaged header: vox_offset is {declared!r}, not a byte offset")
    vox_offset, first = int(declared), hsize + 4
    end = size * MAX_DEFLATE_RATIO + 1024 if gz else size
    if vox_offset + nbytes > end:
        data = f"vox_offset {vox_offset} + {nbytes} voxel bytes"
        if gz:
            raise NiftiReadError(
                path,
                f"header declares {vox_offset + nbytes} bytes ({data}) but a {size}-byte gzip stream "
                f"cannot hold more than {size * MAX_DEFLATE_RATIO} (truncated or lying header)",
            )
        raise NiftiReadError(path, f"truncated: {data} needs {vox_offset + nbytes} bytes, file has {size}")
    if vox_offset < first:
        raise NiftiReadError(
            path,
            f"damaged header: vox_offset {declared!r} lies inside the header (NIfTI-{version} voxel "
            f"data start at byte {first} or later)",
        )
    if head[hsize] == 0:
        return  # no extensions
    pos, count = first, 0
    while vox_offset - pos >= 16:  # as nibabel: fewer bytes than an extension's minimum are padding
        count += 1
        if count > MAX_EXTENSIONS:
            raise NiftiReadError(path, f"damaged header: more than {MAX_EXTENSIONS} header extensions")
        f.seek(pos)
        ext = f.read(8)
        where = f"header extension {count} at byte {pos}"
        if len(ext) < 8:
            raise NiftiReadError(path, f"damaged header: {where} runs past the end of the file")
        esize, _ = struct.unpack(f"{order}ii", ext)
        if esize <= 0 or esize % 16:
            raise NiftiReadError(
                path, f"damaged header: {where} declares esize {esize} (must be a positive multiple of 16)"
            )
        if pos + esize > vox_offset:
            raise NiftiReadError(
                path,
                f"damaged header: {where} (esize {esize}) ends at byte {pos + esize}, past vox_offset "
                f"{vox_offset}: it overlaps the voxel data",
            )
        pos += esize


@_quiet()
def load_header(path: str | os.PathLike[str], max_bytes: int | None = None) -> nib.Nifti1Image:
    """Opens a NIfTI lazily (header only); typed error naming the file when it is not one, when it
    declares more than ``max_bytes`` voxel bytes (default ``max_image_bytes()``) or when its
    layout is damaged (:func:`check_layout`)."""
    p = str(path)
    check_layout(p, max_bytes)
    try:
        img = nib.load(p)
    except (ImageFileError, HeaderDataError, HeaderTypeError, OSError, EOFError, ValueError, zlib.error) as exc:
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
        raise NiftiReadError(
            path,
            f"truncated: vox_offset {needed - nbytes} + {nbytes} voxel bytes needs {needed} bytes, file has {size}",
        )


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


def _decompress(path: str, need: int, limit: int, what: str = "") -> bytearray:
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
        raise NiftiReadError(path, f"truncated: header needs {need} bytes{what}, the stream holds {total}")
    return out


def _read_gzip(path: str, max_bytes: int) -> tuple[np.ndarray, Any, bool]:
    """(raw voxels, header, is NIfTI-2) of a ``.nii.gz``, read and checked completely."""
    size = regular_file_size(path, NiftiReadError)
    img = load_header(path, max_bytes)
    hdr = img.header
    nbytes = _declared_bytes(path, hdr, max_bytes)
    offset = int(getattr(img.dataobj, "offset", 0) or hdr.get_data_offset())  # nibabel blanks vox_offset in img.header
    if nbytes + offset > size * MAX_DEFLATE_RATIO + 1024:
        raise NiftiReadError(
            path,
            f"header declares {nbytes + offset} bytes (vox_offset {offset} + {nbytes} voxel bytes) but "
            f"a {size}-byte gzip stream cannot hold more than {size * MAX_DEFLATE_RATIO} (truncated or lying header)",
        )
    slack = max(1 << 20, nbytes // 100)
    buf = _decompress(path, offset + nbytes, offset + nbytes + slack, f" (vox_offset {offset} + {nbytes} voxel bytes)")
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


@_quiet()
def read_nifti(path: str | os.PathLike[str], *, reorient: bool = False, max_bytes: int | None = None) -> ImageData:
    """Reads a NIfTI file: raw (unscaled) voxels in native byte order, nibabel's affine choice.

    ``reorient=True`` reorders the axes to RAS+ (nibabel ``as_closest_canonical``), records the
    original orientation in the metadata and permutes ``zooms[:3]`` with the axes
    (:mod:`radiobject.formats.nifti_orient`). ``scl_slope`` / ``scl_inter`` are kept in the
    metadata; ``Volume.to_numpy(scaled=True)`` applies them. ``max_bytes`` bounds the voxel bytes a header
    may declare: by default the memory budget of one image read, ``formats.inputs.max_image_bytes()``
    (``RADIOBJECT_MAX_IMAGE_BYTES``, else what RAM and this process's limits allow), read at each
    call so that a limit set after import counts. A gzip file is decompressed fully and its CRC checked.
    """
    p = str(path)
    budget = max_image_bytes() if max_bytes is None else int(max_bytes)
    regular_file_size(p, NiftiReadError)
    if gz := _is_gzip(p):
        raw, header, nifti2 = _read_gzip(p, budget)
        slope, inter = header.get_slope_inter()
        meta = _header_metadata(header, nifti2, 1.0 if slope is None else slope, 0.0 if inter is None else inter)
        affine = header.get_best_affine()
        meta[HEADER_KEY] = capture_header(header, affine)
    else:
        img = load_header(p, budget)
        _check_size(p, img, budget)
        meta = nifti_metadata(img)
        affine = img.affine
        meta[HEADER_KEY] = capture_header(read_raw_header(p, type(img.header)), affine)
        try:
            raw = np.asarray(img.dataobj.get_unscaled())  # type: ignore[attr-defined]  # nibabel's ArrayProxy
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise NiftiReadError(p, f"cannot read voxel data (truncated or corrupt: {exc})") from exc
        header = img.header
    with gzip.open(p, "rb") if gz else open(p, "rb") as f:  # what nibabel's checks fixed in the stored header
        _, reports = BatteryRunner(type(header)._get_checks()).check_fix(type(header).from_fileobj(f, check=False))
    for r in (r for r in reports if r.problem_level):  # the lines nibabel would log: kept, and logged here
        _LOG.log(int(r.problem_level), "%s: nibabel fixed the header on read: %s", p, r.message)
        meta.setdefault("header_fixes", []).append(r.message)
    _check_finite(p, affine, meta)
    if raw.ndim < 3:  # a 1D / 2D NIfTI (dim[0] < 3): the missing spatial axes have length 1
        raw = raw.reshape(raw.shape + (1,) * (3 - raw.ndim))
    if raw.dtype.byteorder not in ("=", "|"):
        raw = raw.astype(raw.dtype.newbyteorder("="))
    if reorient:
        raw, affine = reorient_to_ras(raw, affine, meta)
    return ImageData(np.ascontiguousarray(raw), affine, meta, source=os.path.abspath(p))


def write_nifti(
    path: str | os.PathLike[str], array: np.ndarray, affine: np.ndarray, metadata: dict[str, Any] | None = None
) -> None:
    """Writes a NIfTI-1 (or NIfTI-2 when the metadata says so): dtype and raw voxels kept, the
    header rebuilt from the metadata (``formats.nifti_header``: a NIfTI read by this module comes
    back field for field; other metadata give sform = qform = ``affine`` with its codes, units and
    ``scl_slope`` / ``scl_inter``)."""
    write_nifti_image(path, array, affine, metadata)
