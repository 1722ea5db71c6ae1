"""Lossy storage for image collections: precision reduction before lossless compression.

The voxels are rounded at write time and then stored as an ordinary array of the same dtype with
the collection's lossless codec (``blosc-zstd`` recommended). Rounding zeroes the low bits of each
value (floats: trailing mantissa bits; integers: bits below a power-of-two step), which byte
shuffle + zstd / lz4 then compress away. Nothing about the stored array is unusual, so every
reader decodes it unchanged: tensorstore (the fast path), zarr-python, TileDB, OME-Zarr viewers.

Two settings, one of them per :class:`Lossy`:

* ``max_error``: an absolute error bound in the data's own units (HU for CT, intensity for MRI).
  Floats: each value keeps only the mantissa bits its magnitude needs for that bound, values with
  ``|v| <= max_error`` become 0. Integers: rounding to the largest power-of-two step ``2**k`` with
  ``2**(k-1) <= max_error``. ``|stored - original| <= max_error`` for every voxel.
* ``keep_bits``: floats only, bit rounding to ``keep_bits`` mantissa bits (round to nearest): a
  relative error of at most ``2**-(keep_bits + 1)``.

NaN and +-inf are kept as they are. The achieved quality (PSNR, SSIM, MSE, max error) is measured
against the original at write and recorded in the volume's metadata under ``"lossy"``.

Label collections are never stored lossily (:class:`LossyLabelError`): a rounded label map would
merge or invent classes silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from radiobject.errors import RadiObjectError
from radiobject.formats.image import ArrayLike, ImageData
from radiobject.model.label_maps import LABEL_NAME

__all__ = [
    "LABEL_NAMES",
    "Lossy",
    "LossyError",
    "LossyLabelError",
    "LossyMetrics",
    "RoundedArray",
    "check_lossy_collection",
    "is_label_image",
    "prepare_lossy",
    "reduce_precision",
]

#: Collection names taken for label collections: the one rule, in ``radiobject.model.label_maps``.
LABEL_NAMES = LABEL_NAME
#: An integer volume with at most this many distinct values is taken for a label map.
MAX_LABEL_VALUES = 64
#: SSIM is computed on the central crop of at most this edge (voxels) per axis.
SSIM_CROP = 96
_FLOAT_LAYOUT = {
    np.dtype(np.float16): (np.uint16, 10, 15),
    np.dtype(np.float32): (np.uint32, 23, 127),
    np.dtype(np.float64): (np.uint64, 52, 1023),
}


class LossyError(RadiObjectError, ValueError):
    """A lossy setting cannot be applied to a volume (e.g. ``keep_bits`` for an integer dtype)."""

    def __init__(self, where: str, reason: str) -> None:
        self.where, self.reason = where, reason
        super().__init__(self._message())

    def _message(self) -> str:
        return f"{self.where}: {self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.where, self.reason))


class LossyLabelError(LossyError):
    """Lossy storage was asked for a label collection or a label image."""

    def _message(self) -> str:
        return f"{self.where}: lossy storage refused: {self.reason}; labels are always stored losslessly"


@dataclass(frozen=True)
class Lossy:
    """A precision-reduction setting (see the module documentation); exactly one field is set.

    Attributes:
        max_error: absolute error bound in data units (> 0), for integer and float volumes.
        keep_bits: mantissa bits kept (float16: 1-9, float32: 1-22, float64: 1-51), floats only.
    """

    max_error: float | None = None
    keep_bits: int | None = None

    def __post_init__(self) -> None:
        if (self.max_error is None) == (self.keep_bits is None):
            raise ValueError("Lossy needs exactly one of max_error= or keep_bits=")
        if self.max_error is not None and not (math.isfinite(self.max_error) and self.max_error > 0):
            raise ValueError(f"max_error must be a finite number > 0, got {self.max_error}")
        if self.keep_bits is not None and not 1 <= int(self.keep_bits) <= 51:
            raise ValueError(f"keep_bits must be 1-51, got {self.keep_bits}")

    @classmethod
    def parse(cls, text: str) -> Lossy:
        """``"abs:2"`` / ``"max_error=2"`` -> ``Lossy(max_error=2)``; ``"bits:10"`` / ``"keep_bits=10"``
        -> ``Lossy(keep_bits=10)``."""
        kind, sep, value = text.replace("=", ":").partition(":")
        try:
            if sep and kind in ("abs", "max_error"):
                return cls(max_error=float(value))
            if sep and kind in ("bits", "keep_bits"):
                return cls(keep_bits=int(value))
        except ValueError as exc:
            raise ValueError(f"bad lossy setting {text!r}: {exc}") from None
        raise ValueError(f"bad lossy setting {text!r}: expected abs:ERROR or bits:N")

    def describe(self) -> str:
        """``"max_error=2"`` / ``"keep_bits=10"``."""
        return f"max_error={self.max_error:g}" if self.max_error is not None else f"keep_bits={self.keep_bits}"

    def check_dtype(self, dtype: np.dtype, where: str) -> None:
        """Raises :class:`LossyError` when the setting does not apply to ``dtype`` (of any byte order)."""
        dtype = np.dtype(dtype).newbyteorder("=")
        if dtype == np.bool_:
            raise LossyLabelError(where, "a boolean volume is a mask")
        if dtype.kind in "iu":
            if self.keep_bits is not None:
                raise LossyError(where, f"keep_bits applies to floating-point volumes; use max_error= for {dtype}")
            return
        if dtype not in _FLOAT_LAYOUT:
            raise LossyError(where, f"lossy storage supports integer and float16/32/64 volumes, not {dtype}")
        if self.keep_bits is not None and self.keep_bits >= _FLOAT_LAYOUT[dtype][1]:
            raise LossyError(where, f"keep_bits={self.keep_bits} keeps every mantissa bit of {dtype}")


def check_lossy_collection(name: str, lossy: Lossy | None) -> None:
    """Refuses lossy storage for a collection whose name says it holds labels."""
    if lossy is not None and LABEL_NAMES.search(name):
        raise LossyLabelError(f"collection {name!r}", "its name marks it as a label collection")


def is_label_image(array: np.ndarray, metadata: dict[str, Any]) -> str | None:
    """Why this image is a label map (``None`` when it is an image): a label format's metadata
    (DICOM SEG / RTSTRUCT label lists, a NIfTI label intent, ``role="label"``), a boolean dtype,
    or an integer volume with at most :data:`MAX_LABEL_VALUES` distinct values."""
    if str(metadata.get("role", "")).lower() in ("label", "labels", "mask", "seg"):
        return "its metadata marks it as a label image"
    if metadata.get("labels") or metadata.get("label_map"):
        return "it carries a label table (segmentation format)"
    if int(metadata.get("intent_code", 0) or 0) == 1002 or str(metadata.get("intent", "")).lower() == "label":
        return "its NIfTI intent is 'label'"
    if array.dtype == np.bool_:
        return "a boolean volume is a mask"
    if array.dtype.kind in "iu" and array.size:
        flat = array.reshape(-1)
        sample = flat[:: max(1, flat.size // (1 << 20))]  # about 1 M voxels: a quick "no"
        if np.unique(sample).size > MAX_LABEL_VALUES:
            return None
        seen: set[int] = set()
        for start in range(0, flat.size, 1 << 24):  # bounded memory
            seen.update(np.unique(flat[start : start + (1 << 24)]).tolist())
            if len(seen) > MAX_LABEL_VALUES:
                return None
        return f"it holds only {len(seen)} distinct integer values (a label map)"
    return None


def _bits_rounded(a: np.ndarray, drop: np.ndarray | int, nbits: int) -> np.ndarray:
    """Rounds the float view ``a`` to nearest after dropping ``drop`` low mantissa bits."""
    uint: Any = {16: np.uint16, 32: np.uint32, 64: np.uint64}[nbits]
    bits = a.view(uint)
    d = np.asarray(drop, dtype=uint)
    one = uint(1)
    half = np.where(d > 0, np.left_shift(one, np.maximum(d, one) - one), uint(0)).astype(uint)
    mask = (~(np.left_shift(one, d) - one)).astype(uint)
    out = ((bits + half) & mask).view(a.dtype)
    bad = ~np.isfinite(out) & np.isfinite(a)  # rounding up past the largest finite value
    keep = ~np.isfinite(a) | bad
    return np.where(keep, a, out) if keep.any() else out


def reduce_precision(array: np.ndarray, lossy: Lossy) -> np.ndarray:
    """The rounded copy of ``array`` (same shape and dtype, in native byte order: a big-endian
    ``>f4`` gives ``float32``); elementwise, so any block of a volume is rounded exactly as the
    whole volume would be."""
    a = np.asarray(array)
    lossy.check_dtype(a.dtype, "volume")
    if not a.dtype.isnative:  # the float bits are read through a view: native order first
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype.kind in "iu":
        assert lossy.max_error is not None
        k = int(math.floor(math.log2(lossy.max_error))) + 1 if lossy.max_error >= 1 else 0
        if k == 0:
            return a.copy()
        step, half = 1 << k, 1 << (k - 1)
        info = np.iinfo(a.dtype)
        if a.dtype == np.uint64:
            out = np.floor_divide(a.astype(np.float64) + half, step) * step
        else:  # (v + half) with the low k bits cleared == floor((v + half) / step) * step
            wide: Any = a.astype(np.int32 if a.dtype.itemsize <= 2 else np.int64)
            wide += half
            wide &= ~(step - 1)
            out = wide
        if a.size and int(a.max()) > int(info.max) - half:  # only the top can round out of range
            np.minimum(out, info.max, out=out)
        return out.astype(a.dtype)
    uint, mant, bias = _FLOAT_LAYOUT[a.dtype]
    nbits = a.dtype.itemsize * 8
    a = np.ascontiguousarray(a)
    if lossy.keep_bits is not None:
        return _bits_rounded(a, mant - int(lossy.keep_bits), nbits)
    assert lossy.max_error is not None
    exp = ((a.view(uint) >> uint(mant)) & uint((1 << (nbits - 1 - mant)) - 1)).astype(np.int64)
    exp = np.maximum(exp, 1)  # subnormals share the smallest exponent's ulp
    drop = np.clip(int(math.floor(math.log2(lossy.max_error))) - exp + bias + mant + 1, 0, mant)
    out = _bits_rounded(a, drop, nbits)
    limit = a.dtype.type(lossy.max_error)
    if float(limit) > lossy.max_error:  # the nearest value of the dtype may lie just above the bound
        limit = np.nextafter(limit, a.dtype.type(0))
    small = np.isfinite(a) & (np.abs(a) <= limit)
    return np.where(small, a.dtype.type(0), out).astype(a.dtype, copy=False)


@dataclass
class LossyMetrics:
    """Running quality figures of one volume, accumulated block by block."""

    setting: Lossy
    n: int = 0
    sq_sum: float = 0.0
    max_abs: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    ssim: float | None = None

    def add(self, original: np.ndarray, stored: np.ndarray) -> None:
        """Accumulates one block (finite voxels only), in pieces of bounded memory."""
        flat_a, flat_b = np.asarray(original).reshape(-1), np.asarray(stored).reshape(-1)
        step = 1 << 22
        for start in range(0, flat_a.size, step):
            if flat_a.dtype.kind in "iu" and flat_a.dtype.itemsize <= 2:  # exact and cheaper in int32
                ai = flat_a[start : start + step]
                di = flat_b[start : start + step].astype(np.int32)
                di -= ai
                self.n += ai.size
                self.sq_sum += float(np.dot(di.astype(np.int64), di.astype(np.int64)))
                self.max_abs = max(self.max_abs, float(np.abs(di).max()))
                self.lo, self.hi = min(self.lo, float(ai.min())), max(self.hi, float(ai.max()))
                continue
            a = flat_a[start : start + step].astype(np.float64)
            b = flat_b[start : start + step].astype(np.float64)
            if flat_a.dtype.kind == "f":
                finite = np.isfinite(a)
                if not finite.all():
                    a, b = a[finite], b[finite]
            if a.size == 0:
                continue
            b -= a
            self.n += a.size
            self.sq_sum += float(np.dot(b, b))
            self.max_abs = max(self.max_abs, float(np.abs(b).max()))
            self.lo, self.hi = min(self.lo, float(a.min())), max(self.hi, float(a.max()))

    def set_ssim(self, original: np.ndarray, stored: np.ndarray) -> None:
        """SSIM on the central crop (:data:`SSIM_CROP`) of the volume's first three axes."""
        self.ssim = ssim_central(original, stored, self.hi - self.lo if self.n else 0.0)

    def as_dict(self) -> dict[str, Any]:
        """The ``"lossy"`` metadata entry (JSON-safe; PSNR is ``None`` when nothing changed)."""
        mse = self.sq_sum / self.n if self.n else 0.0
        rng = self.hi - self.lo if self.n else 0.0
        psnr = None if mse == 0 or rng == 0 else round(10 * math.log10(rng * rng / mse), 3)
        return {
            "method": "precision-reduction",
            "setting": self.setting.describe(),
            "max_error": self.setting.max_error,
            "keep_bits": self.setting.keep_bits,
            "psnr_db": psnr,
            "ssim": None if self.ssim is None else round(self.ssim, 6),
            "mse": mse,
            "max_abs_error": self.max_abs,
            "data_range": rng,
            "ssim_region": f"central {SSIM_CROP}^3 crop",
        }


def central_crop(shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The central crop of at most ``SSIM_CROP`` voxels along each of the first three axes (index
    0 along any further axis)."""
    crop: list[Any] = []
    for i, n in enumerate(shape):
        if i < 3:
            start = max(0, n // 2 - SSIM_CROP // 2)
            crop.append(slice(start, start + min(n, SSIM_CROP)))
        else:
            crop.append(slice(0, 1))
    return tuple(crop)


def ssim_central(original: np.ndarray, stored: np.ndarray, data_range: float) -> float | None:
    """Structural similarity (scikit-image: uniform 7-voxel window, sample covariance) of two crops
    already cut with :func:`central_crop`; non-finite voxels count as 0. ``None`` when the crop is
    too thin for a 3-voxel window."""
    from skimage.metrics import structural_similarity

    a = np.nan_to_num(np.asarray(original, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    b = np.nan_to_num(np.asarray(stored, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    a, b = np.squeeze(a), np.squeeze(b)
    if np.array_equal(a, b):
        return 1.0
    if a.ndim == 0 or min(a.shape) < 3 or data_range <= 0:
        return None
    win = min(7, *[n if n % 2 else n - 1 for n in a.shape])
    return float(structural_similarity(a, b, data_range=data_range, win_size=win))


class RoundedArray:
    """A lazy source whose blocks are read and rounded on demand (``ArrayLike``)."""

    def __init__(self, source: ArrayLike, lossy: Lossy) -> None:
        self.source, self.lossy = source, lossy

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.source.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.source.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        return reduce_precision(np.asarray(self.source[key]), self.lossy)


#: Voxels per slab when measuring a lazy source (bounded memory).
_SLAB_VOXELS = 1 << 25


def prepare_lossy(image: ImageData, lossy: Lossy, where: str) -> ImageData:
    """``image`` with rounded voxels and its measured quality in ``metadata["lossy"]``.

    An in-memory array is rounded at once; a lazy one is measured slab by slab (one extra read
    of the source) and rounded block by block as it is written.

    Raises:
        LossyLabelError: the image is a label map (see :func:`is_label_image`).
        LossyError: the setting does not apply to the image's dtype.
    """
    lossy.check_dtype(image.dtype, where)
    eager = isinstance(image.array, np.ndarray)
    crop = central_crop(image.shape)
    orig_crop = np.asarray(image.array[crop])  # a lazy source is judged by its central crop
    reason = is_label_image(np.asarray(image.array) if eager else orig_crop, image.metadata)
    if reason is not None:
        raise LossyLabelError(where, reason)
    metrics = LossyMetrics(lossy)
    if eager:
        original = np.asarray(image.array)
        stored: ArrayLike = reduce_precision(original, lossy)
        metrics.add(original, np.asarray(stored))
        metrics.set_ssim(original[crop], np.asarray(stored)[crop])
    else:
        shape = image.shape
        per_slab = max(1, _SLAB_VOXELS // max(1, math.prod(shape[1:])))
        for start in range(0, shape[0], per_slab):
            key = (slice(start, min(start + per_slab, shape[0])),) + tuple(slice(0, n) for n in shape[1:])
            block = np.asarray(image.array[key])
            metrics.add(block, reduce_precision(block, lossy))
        metrics.set_ssim(orig_crop, reduce_precision(orig_crop, lossy))
        stored = RoundedArray(image.array, lossy)
    metadata = {**image.metadata, "lossy": metrics.as_dict()}
    return ImageData(stored, image.affine, metadata, image.source)
