"""Pixel decoding and the modality LUT.

Decoding goes through pydicom's pixel-data plugins (``Dataset.pixel_array``), which handle the
native syntaxes, deflate and RLE themselves and JPEG / JPEG-LS / JPEG 2000 through whichever of
pylibjpeg-*, pyjpegls, Pillow or python-gdcm is installed. When no installed pydicom plugin can
decode a lossless JPEG, JPEG-LS or JPEG 2000 syntax, the frames are decoded with ``imagecodecs``
(BSD-3, already a dependency for TIFF), so JPEG lossless (process 14) works without the GPLv3
pylibjpeg-libjpeg. Lossy JPEG baseline / extended have no such fallback (colour transform and
IDCT rounding differ between libraries): Pillow is the plugin for them.
If that fails too, :class:`MissingDecoderError` names the package(s) to install.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from radiobject.formats.dicom.errors import DicomError, MissingDecoderError

#: transfer syntax UID -> packages that add a pydicom decoder for it (first = our recommendation).
DECODER_PACKAGES: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.4.50": (
        "pillow",
        "python-gdcm",
        "pylibjpeg-libjpeg",
    ),  # JPEG baseline
    # JPEG extended: Pillow reads 8-bit only; 12-bit needs python-gdcm or pylibjpeg-libjpeg
    "1.2.840.10008.1.2.4.51": ("pillow", "python-gdcm", "pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.57": ("python-gdcm", "pylibjpeg-libjpeg"),  # JPEG lossless
    "1.2.840.10008.1.2.4.70": ("python-gdcm", "pylibjpeg-libjpeg"),  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": (
        "pyjpegls",
        "python-gdcm",
        "pylibjpeg-libjpeg",
    ),  # JPEG-LS
    "1.2.840.10008.1.2.4.81": ("pyjpegls", "python-gdcm", "pylibjpeg-libjpeg"),
    "1.2.840.10008.1.2.4.90": (
        "pylibjpeg-openjpeg",
        "pillow",
        "python-gdcm",
    ),  # J2K lossless
    "1.2.840.10008.1.2.4.91": ("pylibjpeg-openjpeg", "pillow", "python-gdcm"),  # J2K
    "1.2.840.10008.1.2.4.201": ("pylibjpeg-openjpeg",),  # HTJ2K
    "1.2.840.10008.1.2.4.202": ("pylibjpeg-openjpeg",),
    "1.2.840.10008.1.2.4.203": ("pylibjpeg-openjpeg",),
}

_IMAGECODECS_FUNCS = {
    "1.2.840.10008.1.2.4.50": "jpeg8_decode",
    "1.2.840.10008.1.2.4.51": "jpeg8_decode",
    "1.2.840.10008.1.2.4.57": "ljpeg_decode",
    "1.2.840.10008.1.2.4.70": "ljpeg_decode",
    "1.2.840.10008.1.2.4.80": "jpegls_decode",
    "1.2.840.10008.1.2.4.81": "jpegls_decode",
    "1.2.840.10008.1.2.4.90": "jpeg2k_decode",
    "1.2.840.10008.1.2.4.91": "jpeg2k_decode",
}
#: syntaxes where imagecodecs output equals pydicom's plugins (checked on the pydicom test files);
#: for lossy JPEG baseline / extended the colour transform and IDCT rounding can differ, so it is
#: not used there unless asked for (``backend="imagecodecs"``)
_AUTO_FALLBACK = {k for k in _IMAGECODECS_FUNCS if k not in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")}


def transfer_syntax(ds: Dataset) -> str:
    """The data set's transfer syntax UID ('' when the file meta has none)."""
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


def _fix_sign(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Interpret decoded codestream samples as DICOM stored values (sign-extend BitsStored)."""
    bits_stored = int(ds.get("BitsStored", arr.dtype.itemsize * 8))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if not signed or arr.dtype.kind == "i" and bits_stored == arr.dtype.itemsize * 8:
        return arr
    width = 8 if bits_stored <= 8 else 16 if bits_stored <= 16 else 32
    out = arr.astype(np.dtype(f"i{width // 8}"))
    if bits_stored < width:
        shift = width - bits_stored
        out = (out << shift) >> shift
    return out


def _decode_imagecodecs(ds: Dataset, path: str) -> np.ndarray:
    """Decode encapsulated JPEG-family frames with imagecodecs (fallback path)."""
    import imagecodecs
    from pydicom.encaps import generate_frames

    ts = transfer_syntax(ds)
    func = getattr(imagecodecs, _IMAGECODECS_FUNCS[ts])
    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = [np.asarray(func(f)) for f in generate_frames(ds.PixelData, number_of_frames=n)]
    arr = np.stack(frames) if n > 1 else frames[0]
    return _fix_sign(arr, ds)


_NATIVE = {
    "1.2.840.10008.1.2": "<",
    "1.2.840.10008.1.2.1": "<",
    "1.2.840.10008.1.2.2": ">",
}


def _decode_native(ds: Dataset) -> np.ndarray | None:
    """Fast path for uncompressed monochrome pixel data (None: let pydicom do it).

    Same result as pydicom's ``pixel_array``: unused high bits cleared (unsigned) or
    sign-extended (signed) by shifting left then right.
    """
    ts = transfer_syntax(ds)
    order = _NATIVE.get(ts)
    if order is None or "PixelData" not in ds or int(ds.get("SamplesPerPixel", 1)) != 1:
        return None
    bits = int(ds.get("BitsAllocated", 0))
    if bits not in (8, 16, 32) or (bits == 8 and order == ">"):
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    dtype = np.dtype(f"{order}{'i' if signed else 'u'}{bits // 8}")
    buf = ds.PixelData
    need = rows * cols * frames * dtype.itemsize
    if len(buf) < need:
        return None  # pydicom raises the proper error for truncated data
    arr = np.frombuffer(buf, dtype=dtype, count=rows * cols * frames).astype(dtype.newbyteorder("="))
    stored = int(ds.get("BitsStored", bits))
    if stored < bits:
        shift = bits - stored
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr.reshape((frames, rows, cols) if frames > 1 else (rows, cols))


def decode_pixels(ds: Dataset, path: str = "", *, backend: str = "auto") -> np.ndarray:
    """Decode the stored pixel values of one data set.

    Args:
        ds: the data set (pixel data may be deferred; pydicom re-reads it from ``ds.filename``).
        path: the file name used in error messages.
        backend: ``"auto"`` (numpy for uncompressed monochrome data, else pydicom plugins, then
            imagecodecs for lossless JPEG, JPEG-LS, J2K), ``"pydicom"`` (pydicom only) or
            ``"imagecodecs"`` (JPEG family via imagecodecs).

    Returns:
        Stored values (before the modality LUT) as pydicom shapes them: ``(rows, cols)``,
        ``(frames, rows, cols)`` or with a trailing samples axis for colour data (converted to RGB).

    Raises:
        MissingDecoderError: no installed decoder handles the transfer syntax.
        DicomError: no pixel data, or the pixel data is truncated / corrupt.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomError(path, "no pixel data (7FE0,0010) in the file")
    ts = transfer_syntax(ds)
    if backend == "imagecodecs" and ts in _IMAGECODECS_FUNCS:
        return _decode_imagecodecs(ds, path)
    try:
        fast = _decode_native(ds) if backend != "pydicom" else None
    except Exception:  # noqa: BLE001 - odd headers (bad VRs): let pydicom decide / report
        fast = None
    if fast is not None:
        return fast
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises RuntimeError / ValueError / NotImplementedError
        msg = str(exc)
        missing = (
            "missing" in msg.lower()
            or "no pixel data decoders" in msg.lower()
            or ("not supported" in msg.lower() and ts in DECODER_PACKAGES)
        )
        if ts in _AUTO_FALLBACK and backend == "auto" and missing:
            try:
                return _decode_imagecodecs(ds, path)
            except Exception:  # noqa: BLE001, S110 - fall through to the typed error below
                pass
        if missing and ts in DECODER_PACKAGES:
            pkgs = DECODER_PACKAGES[ts]
            raise MissingDecoderError(
                path,
                f"no installed decoder for transfer syntax {UID(ts).name} ({ts}); "
                f"install one of: pip install {' | '.join(pkgs)}",
            ) from exc
        if missing:
            raise MissingDecoderError(path, f"no decoder for transfer syntax {ts}: {msg}") from exc
        raise DicomError(path, f"cannot decode pixel data ({UID(ts).name if ts else '?'}): {msg}") from exc


def int_dtype_for(lo: float, hi: float, min_itemsize: int = 1) -> np.dtype:
    """The smallest integer dtype of at least ``min_itemsize`` bytes holding [lo, hi]."""
    order = ("u1", "i1", "u2", "i2", "u4", "i4", "i8")
    for code in order:
        dt = np.dtype(code)
        if dt.itemsize < min_itemsize:
            continue
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return np.dtype("f8")


def apply_modality_lut(
    stack: np.ndarray,
    slopes: Sequence[float],
    intercepts: Sequence[float],
    stored_itemsize: int,
) -> tuple[np.ndarray, dict[str, object]]:
    """Apply RescaleSlope / RescaleIntercept per slice and choose the output dtype.

    Args:
        stack: stored values, one image per entry of the first axis.
        slopes, intercepts: one value per image.
        stored_itemsize: bytes per stored sample; the integer result is never narrower.

    Returns:
        ``(values, info)``: integer values in the smallest integer dtype (no narrower than the
        stored one) that holds them when every slope and intercept is an integer; float32 when
        slopes or intercepts are fractional or vary between images. ``info`` records what was done.
    """
    slopes_a = np.asarray(slopes, dtype=np.float64)
    inter_a = np.asarray(intercepts, dtype=np.float64)
    uniform = bool(np.all(slopes_a == slopes_a[0]) and np.all(inter_a == inter_a[0]))
    integral = bool(np.all(slopes_a == np.round(slopes_a)) and np.all(inter_a == np.round(inter_a)))
    info: dict[str, object] = {
        "rescale_slope": float(slopes_a[0]) if uniform else None,
        "rescale_intercept": float(inter_a[0]) if uniform else None,
        "rescale_varies": not uniform,
    }
    if stack.dtype.kind == "f":
        shape = (-1,) + (1,) * (stack.ndim - 1)
        out = stack.astype(np.float32) * slopes_a.reshape(shape).astype(np.float32)
        return out + inter_a.reshape(shape).astype(np.float32), info
    if uniform and slopes_a[0] == 1 and inter_a[0] == 0:
        lo, hi = (int(stack.min()), int(stack.max())) if stack.size else (0, 0)
        dt = int_dtype_for(lo, hi, stored_itemsize)
        return stack.astype(dt, copy=stack.dtype != dt), info
    if integral:
        shape = (-1,) + (1,) * (stack.ndim - 1)
        s = slopes_a.astype(np.int64).reshape(shape)
        b = inter_a.astype(np.int64).reshape(shape)
        res = stack.astype(np.int64) * s + b
        lo, hi = (int(res.min()), int(res.max())) if res.size else (0, 0)
        return res.astype(int_dtype_for(lo, hi, stored_itemsize)), info
    shape = (-1,) + (1,) * (stack.ndim - 1)
    out64 = stack.astype(np.float64) * slopes_a.reshape(shape) + inter_a.reshape(shape)
    return out64.astype(np.float32), info


__all__ = [
    "DECODER_PACKAGES",
    "apply_modality_lut",
    "decode_pixels",
    "int_dtype_for",
    "transfer_syntax",
]
