"""NIfTI header fidelity: capture every header field at ingest, rebuild it at export.

:func:`capture_header` turns a NIfTI-1 / NIfTI-2 header into a JSON-serialisable dict that the
reader stores in the volume's metadata under ``"nifti_header"``; :func:`build_header` and
:func:`write_nifti_image` rebuild a header from it, so an exported file equals its source field
for field. What is kept:

- every field of the header except those that follow from the data written (``sizeof_hdr``,
  ``dim``, ``datatype``, ``bitpix``, ``vox_offset``, ``magic``, NIfTI-2 ``eol_check``): units
  (``xyzt_units``), ``sform_code`` / ``qform_code``, ``dim_info``, ``slice_*``, ``intent_*``,
  ``cal_min`` / ``cal_max``, ``toffset``, ``descrip``, ``aux_file``, the legacy ANALYZE fields;
- the raw ``scl_slope`` / ``scl_inter`` (voxels are stored raw, so they stay valid);
- the qform (``quatern_b/c/d``, ``qoffset_x/y/z``, ``qfac`` = ``pixdim[0]``) and the whole
  ``pixdim`` (``pixdim[4]`` is TR), exactly; the ``srow_*`` rows only when they differ from the
  affine the volume stores (otherwise they are that affine);
- header extensions up to :data:`MAX_EXTENSION_BYTES` in all, NIfTI-1 vs 2. The source's byte
  order is recorded (``endianness``); files are written in native order, as the store holds them.

The exact qform / sform / pixdim / slice fields are restored only while the volume still has the
geometry they describe (same affine, same first three axes as at capture). A reoriented or
resampled volume gets qform = sform = its own affine with the source's codes, spacing from that
affine, and no ``dim_info`` / ``slice_*`` (they would name the wrong axes).
"""

from __future__ import annotations

import base64
import math
import os
from typing import Any

import nibabel as nib
import numpy as np

from radiobject.errors import NiftiReadError

__all__ = [
    "DERIVED_DROP",
    "HEADER_KEY",
    "MAX_EXTENSION_BYTES",
    "NIFTI_DTYPES",
    "build_header",
    "capture_header",
    "derived_metadata",
    "nifti_export_metadata",
    "read_raw_header",
    "write_nifti_image",
]

#: Metadata key of the captured header.
HEADER_KEY = "nifti_header"
#: Header extensions larger than this in total (bytes) are not kept (their count is recorded).
MAX_EXTENSION_BYTES = 64 << 10
#: Fields that follow from the data written, never copied.
_DATA_FIELDS = frozenset({"sizeof_hdr", "dim", "datatype", "bitpix", "vox_offset", "magic", "eol_check"})
#: Fields captured separately (geometry and scaling).
_SPECIAL = frozenset(
    {
        "pixdim",
        "quatern_b",
        "quatern_c",
        "quatern_d",
        "qoffset_x",
        "qoffset_y",
        "qoffset_z",
        "srow_x",
        "srow_y",
        "srow_z",
        "scl_slope",
        "scl_inter",
    }
)
_QFORM = ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")
_SROWS = ("srow_x", "srow_y", "srow_z")
#: Fields that name array axes: kept only while the geometry is unchanged.
_AXIS_FIELDS = ("dim_info", "slice_start", "slice_end", "slice_code", "slice_duration")
#: Fields a derived volume (a prediction) does not inherit from its source: they describe the
#: source's values, not the geometry (:func:`derived_metadata`).
DERIVED_DROP = (
    "intent_code",
    "intent_p1",
    "intent_p2",
    "intent_p3",
    "intent_name",
    "cal_min",
    "cal_max",
    "descrip",
    "aux_file",
    "glmax",
    "glmin",
)


def _enc(value: Any) -> Any:
    """A header value as JSON: bytes as latin-1 text, non-finite floats as text."""
    arr = np.asarray(value)
    if arr.ndim:
        return [_enc(v) for v in arr]
    if arr.dtype.kind == "S":
        return arr.item().decode("latin-1")
    if arr.dtype.kind in "iub":
        return int(arr)
    f = float(arr)
    return f if math.isfinite(f) else repr(f)


def _dec(value: Any) -> Any:
    if isinstance(value, list):
        return [_dec(v) for v in value]
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def _set(hdr: Any, key: str, value: Any) -> None:
    if key not in hdr.keys():
        return  # a NIfTI-1 legacy field written as NIfTI-2
    value = _dec(value)
    if isinstance(value, str):
        value = value.encode("latin-1")
    hdr[key] = value


def capture_header(header: Any, affine: np.ndarray | None = None) -> dict[str, Any]:
    """Every header field a round trip needs, JSON-serialisable (see the module docstring).

    ``header`` is a ``Nifti1Header`` / ``Nifti2Header`` read from the file (raw scaling and
    extensions); ``affine`` the affine the volume is stored with (default the header's best one).
    """
    best = np.asarray(header.get_best_affine() if affine is None else affine, dtype=np.float64)
    ndim = int(header["dim"][0])
    out: dict[str, Any] = {
        "version": 2 if isinstance(header, nib.Nifti2Header) else 1,
        "endianness": header.endianness,
        "shape": [int(v) for v in header["dim"][1 : 1 + ndim]],
        "affine": [float(v) for v in best.ravel()],
        "fields": {k: _enc(header[k]) for k in header.keys() if k not in _DATA_FIELDS and k not in _SPECIAL},
        "scl_slope": _enc(header["scl_slope"]),
        "scl_inter": _enc(header["scl_inter"]),
        "pixdim": _enc(header["pixdim"]),
        "qform": {k: _enc(header[k]) for k in _QFORM},
    }
    rows = np.stack([np.asarray(header[k], dtype=np.float64) for k in _SROWS])
    if not np.array_equal(rows, best[:3]):
        out["sform"] = [_enc(header[k]) for k in _SROWS]
    exts, size, dropped = [], 0, 0
    for ext in getattr(header, "extensions", []) or []:
        raw = getattr(ext, "content", None)  # nibabel >= 5.2: the raw bytes
        content = bytes(raw) if isinstance(raw, (bytes, bytearray)) else bytes(ext._mangle(ext.get_content()))
        size += len(content)
        if size > MAX_EXTENSION_BYTES:
            dropped += 1
            continue
        exts.append([int(ext.get_code()), base64.b64encode(content).decode("ascii")])
    if exts:
        out["extensions"] = exts
    if dropped:
        out["extensions_dropped"] = dropped
    return out


def derived_metadata(source: dict[str, Any] | None, *, intent: str | None = None, **extra: Any) -> dict[str, Any]:
    """Metadata for a volume computed on the grid of ``source`` (a prediction): the source's
    geometry header (qform / sform / pixdim[:4], codes, units, slice timing, NIfTI version)
    without what describes the source's values (scaling, intent, cal_min/max, description,
    extensions, ``pixdim[4:]``). ``intent`` (a nibabel intent name such as ``"label"``) sets the
    new volume's ``intent_code``; ``extra`` keys are added."""
    src = dict(source or {})
    meta: dict[str, Any] = {
        k: src[k] for k in ("format", "sform_code", "qform_code", "xyz_units", "t_units") if k in src
    }
    hdr = src.get(HEADER_KEY)
    if isinstance(hdr, dict):
        h = {k: v for k, v in hdr.items() if k not in ("extensions", "extensions_dropped")}
        h["fields"] = {k: v for k, v in (hdr.get("fields") or {}).items() if k not in DERIVED_DROP}
        h["scl_slope"], h["scl_inter"] = "nan", "nan"
        h["pixdim"] = list(hdr.get("pixdim") or [])[:4]
        if intent is not None:
            # the ignore below: nibabel's Recoder lookup is untyped
            h["fields"]["intent_code"] = int(nib.nifti1.intent_codes.code[intent])  # type: ignore[call-overload]
        meta[HEADER_KEY] = h
    if intent is not None:
        meta["intent"] = intent
    meta.update(extra)
    return meta


def _geometry_kept(hdr: dict[str, Any], shape: tuple[int, ...], affine: np.ndarray) -> bool:
    captured = np.asarray(hdr.get("affine") or [], dtype=np.float64)
    return (
        captured.size == 16
        and list(hdr.get("shape") or [])[:3] == list(shape[:3])
        and np.allclose(captured.reshape(4, 4), affine, rtol=1e-9, atol=1e-9)
    )


def _effective_scaling(slope: Any, inter: Any) -> tuple[float, float]:
    s = 1.0 if slope is None else float(_dec(slope))
    i = 0.0 if inter is None else float(_dec(inter))
    if not math.isfinite(s) or s == 0.0:
        return 1.0, 0.0
    return s, (i if math.isfinite(i) else 0.0)


def _set_geometry(h: Any, affine: np.ndarray, sform_code: int, qform_code: int) -> None:
    """qform = sform = ``affine`` with the given codes; an affine the qform cannot hold (shears)
    keeps an sform code so readers still use it; with both codes 0 the affine would be lost."""
    if not sform_code and not qform_code:
        sform_code = qform_code = 1
    h.set_qform(affine, code=qform_code)
    if not sform_code and not np.allclose(h.get_qform(), affine, atol=1e-5):
        sform_code = qform_code
    h.set_sform(affine, code=sform_code)


def _set_pixdim(h: Any, start: int, values: list[Any]) -> None:
    pixdim = np.array(h["pixdim"], dtype=np.float64)
    pixdim[start : start + len(values)] = [float(v) for v in _dec(list(values))]
    h["pixdim"] = pixdim


def build_header(array: np.ndarray, affine: np.ndarray, metadata: dict[str, Any] | None = None) -> Any:
    """A ``Nifti1Header`` / ``Nifti2Header`` for ``array`` (its shape and dtype) placed by
    ``affine``, with every field :func:`capture_header` recorded in ``metadata`` (else the flat
    keys ``xyz_units`` / ``t_units`` / ``sform_code`` / ``qform_code`` / ``zooms`` / ``scl_*``
    of older metadata and of other readers). ``vox_offset`` is left to the writer."""
    meta = metadata or {}
    hdr = meta.get(HEADER_KEY) if isinstance(meta.get(HEADER_KEY), dict) else None
    affine = np.asarray(affine, dtype=np.float64)
    version = int(hdr["version"]) if hdr else (2 if meta.get("format") == "nifti2" else 1)
    cls = nib.Nifti2Header if version == 2 else nib.Nifti1Header
    h = cls()  # native byte order, as the store holds the voxels (the source's is recorded)
    h.set_data_shape(array.shape)
    h.set_data_dtype(array.dtype)
    if hdr is None:  # metadata without a captured header: the flat keys
        if meta.get("xyz_units") or meta.get("t_units"):
            h.set_xyzt_units(meta.get("xyz_units") or "unknown", meta.get("t_units") or "unknown")
        _set_geometry(h, affine, int(meta.get("sform_code") or 1), int(meta.get("qform_code") or 1))
        zooms = meta.get("zooms")
        if zooms and len(zooms) == array.ndim and array.ndim > 3:
            _set_pixdim(h, 4, zooms[3:])
        if meta.get("scl_slope") is not None:
            h.set_slope_inter(meta["scl_slope"], meta.get("scl_inter") or 0.0)
        return h
    kept = _geometry_kept(hdr, array.shape, affine)
    fields = dict(hdr.get("fields") or {})
    for key, value in fields.items():
        if kept or key not in _AXIS_FIELDS:
            _set(h, key, value)
    codes = (
        int(fields.get("sform_code", meta.get("sform_code") or 0)),
        int(fields.get("qform_code", meta.get("qform_code") or 0)),
    )
    pixdim = list(hdr.get("pixdim") or [])
    if kept:
        for key, value in (hdr.get("qform") or {}).items():
            _set(h, key, value)
        rows = hdr.get("sform") or [list(r) for r in affine[:3]]
        for key, row in zip(_SROWS, rows, strict=True):
            _set(h, key, row)
        if pixdim:
            _set_pixdim(h, 0, pixdim)
    else:
        _set_geometry(h, affine, codes[0], codes[1])
        if len(pixdim) > 4 and len(hdr.get("shape") or []) == array.ndim:
            _set_pixdim(h, 4, pixdim[4:])
    flat = _effective_scaling(meta.get("scl_slope"), meta.get("scl_inter"))
    if flat == _effective_scaling(hdr.get("scl_slope"), hdr.get("scl_inter")):
        _set(h, "scl_slope", hdr.get("scl_slope", "nan"))
        _set(h, "scl_inter", hdr.get("scl_inter", "nan"))
    else:  # the recorded scaling was changed after capture: it wins
        h.set_slope_inter(*flat)
    for code, content in hdr.get("extensions") or []:
        h.extensions.append(nib.nifti1.Nifti1Extension(int(code), base64.b64decode(content)))
    return h


def write_nifti_image(
    path: str | os.PathLike[str], array: np.ndarray, affine: np.ndarray, metadata: dict[str, Any] | None = None
) -> None:
    """Writes ``array`` (dtype and raw values kept, native byte order) with the header
    :func:`build_header` makes; ``.nii.gz`` names are gzip-compressed. The file appears whole
    (written beside it, then renamed)."""
    arr = np.asarray(array)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    h = build_header(arr, affine, metadata)
    offset = h.single_vox_offset + sum(int(e.get_sizeondisk()) for e in h.extensions)
    h["vox_offset"] = offset
    data = np.asfortranarray(arr.astype(h.get_data_dtype(), copy=False))
    p = os.fspath(path)
    tmp = os.path.join(
        os.path.dirname(p) or ".",
        f".{os.path.basename(p)}.{os.getpid()}.part" + (".gz" if p.lower().endswith(".gz") else ""),
    )
    try:
        with nib.openers.Opener(tmp, "wb") as f:
            h.write_to(f)
            f.write(b"\x00" * (offset - int(f.tell())))
            flat = np.ascontiguousarray(data.T).reshape(-1).view(np.uint8)
            f.write(flat.data)  # type: ignore[arg-type]  # any buffer; no copy of the voxels
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_raw_header(path: str | os.PathLike[str], cls: type[nib.Nifti1Header] = nib.Nifti1Header) -> Any:
    """The header (with raw ``scl_slope`` / ``scl_inter`` and its extensions) of an uncompressed
    ``.nii`` file, as stored; nibabel's image header has the scaling blanked."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            return cls.from_fileobj(f)
    except (OSError, EOFError, ValueError, nib.spatialimages.HeaderDataError) as exc:
        raise NiftiReadError(p, f"unreadable header or extensions ({exc})") from exc


#: Voxel dtypes a NIfTI-1 / NIfTI-2 file holds (native byte order).
NIFTI_DTYPES = frozenset(
    np.dtype(t)
    for t in (
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
        "float32", "float64", "complex64", "complex128",
    )
)  # fmt: skip


def nifti_export_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata a volume is exported to NIfTI with: its own, plus ``xyz_units = "mm"`` when
    it came from no NIfTI (no captured header, no recorded units): stored affines are in mm."""
    if HEADER_KEY in metadata or "xyz_units" in metadata:
        return metadata
    return {**metadata, "xyz_units": "mm"}
