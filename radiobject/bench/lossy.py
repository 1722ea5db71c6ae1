"""Lossy codecs (via imagecodecs) measured the way a chunked store would use them.

3-D codecs (ZFP, SZ3) encode 64^3 chunks; 2-D codecs (JPEG 2000, JPEG XL) encode axial slices.
Quality is measured against the original: MSE and PSNR over the whole volume, SSIM (scikit-image,
3-D, window 7) on a central crop of at most 96^3 voxels (SSIM on 78 M voxels would dominate the run).
Lossless settings of the same codecs are included and checked bit-exact. None of these codecs is a
radiobject storage option today: the numbers say what they would buy.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK = 64
SSIM_CROP = 96


@dataclass(frozen=True)
class LossySetting:
    """A codec with its parameters: ``kind`` is ``"3d"`` (per chunk) or ``"2d"`` (per axial slice);
    ``decode(blob, shape, dtype)`` returns the block."""

    codec: str
    param: str
    kind: str
    encode: Callable[[np.ndarray], bytes | bytearray]
    decode: Callable[[bytes | bytearray, tuple[int, ...], np.dtype], np.ndarray]


def _available(name: str) -> bool:
    import imagecodecs

    codec = getattr(imagecodecs, name.upper(), None)
    return bool(codec is not None and getattr(codec, "available", False))


def settings_for(data: np.ndarray, quick: bool = True) -> list[LossySetting]:
    """Lossy (and lossless reference) settings that apply to ``data``'s dtype, given what imagecodecs
    has. Error bounds are in the data's own units (HU for CT, intensity for MRI; the synthetic
    volumes' noise sigma is 12 of those units). Integer data goes to the 2-D codecs as unsigned
    ``bitspersample``-bit samples (offset by its minimum), so that their quality targets refer to the
    data's real range."""
    import imagecodecs as ic

    out: list[LossySetting] = []
    is_int = bool(np.issubdtype(data.dtype, np.integer))
    tolerances = (2.0, 8.0) if quick else (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    f32 = np.float32
    if _available("zfp"):  # ZFP has no int16: encode float32, round back to the integer dtype
        for tol in tolerances:

            def zfp_enc(a: np.ndarray, t: float = tol) -> bytes | bytearray:
                # imagecodecs' stub types level as int; in mode "a" it is the float tolerance
                return ic.zfp_encode(a.astype(f32), mode="a", level=t)  # type: ignore[arg-type]

            out.append(LossySetting("zfp", f"tolerance={tol:g}", "3d", zfp_enc, lambda b, shape, dt: ic.zfp_decode(b)))
    if _available("sz3"):
        for tol in tolerances:

            def sz3_enc(a: np.ndarray, t: float = tol) -> bytes | bytearray:
                return ic.sz3_encode(a.astype(f32), mode="abs", abs=t)

            out.append(
                LossySetting(
                    "sz3", f"abs={tol:g}", "3d", sz3_enc, lambda b, shape, dt: ic.sz3_decode(b, shape, np.dtype(f32))
                )
            )
    offset = int(-data.min()) if is_int and data.min() < 0 else 0
    span = int(data.max()) + offset if is_int else 0
    if is_int and 0 < span < 65536:
        bps = max(8, int(np.ceil(np.log2(span + 1))))

        def to_u16(a: np.ndarray) -> np.ndarray:
            return (a.astype(np.int32) + offset).astype(np.uint16)

        def from_u16(d: np.ndarray) -> np.ndarray:
            return d.astype(np.int32) - offset

        if _available("jpeg2k"):
            out.append(
                LossySetting(
                    "jpeg2k",
                    "lossless",
                    "2d",
                    lambda a: ic.jpeg2k_encode(to_u16(a), reversible=True, bitspersample=bps),
                    lambda b, shape, dt: from_u16(ic.jpeg2k_decode(b)),
                )
            )
            for psnr in (80, 60) if quick else (90, 80, 70, 60, 50):

                def j2k_enc(a: np.ndarray, q: int = psnr) -> bytes | bytearray:
                    return ic.jpeg2k_encode(to_u16(a), level=q, bitspersample=bps)

                out.append(
                    LossySetting(
                        "jpeg2k", f"psnr={psnr}dB", "2d", j2k_enc, lambda b, shape, dt: from_u16(ic.jpeg2k_decode(b))
                    )
                )
        jxl_in: Callable[[np.ndarray], np.ndarray] = to_u16
        jxl_out: Callable[[np.ndarray], np.ndarray] = from_u16
        jxl_bps: int | None = bps
    else:
        jxl_in, jxl_out, jxl_bps = (lambda a: a.astype(f32)), (lambda d: d), None
    if _available("jpegxl") and (is_int and 0 < span < 65536 or data.dtype == f32):
        out.append(
            LossySetting(
                "jpegxl",
                "lossless",
                "2d",
                lambda a: ic.jpegxl_encode(jxl_in(a), lossless=True, bitspersample=jxl_bps, effort=3),
                lambda b, shape, dt: jxl_out(ic.jpegxl_decode(b)),
            )
        )
        for dist in (0.5, 2.0) if quick else (0.25, 0.5, 1.0, 2.0, 4.0):

            def jxl_enc(a: np.ndarray, d: float = dist) -> bytes | bytearray:
                return ic.jpegxl_encode(jxl_in(a), distance=d, effort=3, bitspersample=jxl_bps)

            out.append(
                LossySetting(
                    "jpegxl", f"distance={dist:g}", "2d", jxl_enc, lambda b, shape, dt: jxl_out(ic.jpegxl_decode(b))
                )
            )
    return out


def _blocks(shape: tuple[int, ...], kind: str) -> list[tuple[slice, ...]]:
    if kind == "2d":
        return [(slice(None), slice(None), slice(k, k + 1)) for k in range(shape[2])]
    ranges = [range(0, n, CHUNK) for n in shape]
    return [
        tuple(slice(s, min(s + CHUNK, n)) for s, n in zip(starts, shape, strict=True))
        for starts in itertools.product(*ranges)
    ]


def _bounds(region: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(*r.indices(n)[:2]) for r, n in zip(region, shape, strict=True))


def _ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    from skimage.metrics import structural_similarity

    crop = tuple(
        slice(max(0, n // 2 - SSIM_CROP // 2), max(0, n // 2 - SSIM_CROP // 2) + min(n, SSIM_CROP)) for n in a.shape
    )
    a, b = a[crop].astype(np.float64), b[crop].astype(np.float64)
    win = min(7, *[n if n % 2 else n - 1 for n in a.shape])
    return float(structural_similarity(a, b, data_range=data_range, win_size=max(3, win)))


def measure_lossy(data: np.ndarray, setting: LossySetting) -> dict[str, Any]:
    """Encodes ``data`` block by block, decodes it back, and compares with the original."""
    blocks = _blocks(data.shape, setting.kind)
    t = time.perf_counter()
    encoded = []
    for region in blocks:
        block = np.ascontiguousarray(data[region][..., 0] if setting.kind == "2d" else data[region])
        encoded.append(setting.encode(block))
    enc_s = time.perf_counter() - t
    restored = np.empty(data.shape, dtype=data.dtype)
    t = time.perf_counter()
    for region, blob in zip(blocks, encoded, strict=True):
        shape = tuple(r.stop - r.start for r in _bounds(region, data.shape))
        if setting.kind == "2d":
            shape = shape[:2]
        block = np.asarray(setting.decode(blob, shape, data.dtype))
        if np.issubdtype(data.dtype, np.integer):
            block = np.clip(np.rint(block), np.iinfo(data.dtype).min, np.iinfo(data.dtype).max)
        restored[region] = block.reshape(restored[region].shape)
    dec_ms = (time.perf_counter() - t) * 1e3
    size = sum(len(b) for b in encoded)
    diff = restored.astype(np.float64) - data.astype(np.float64)
    mse = float(np.mean(diff**2))
    data_range = float(data.max()) - float(data.min())
    psnr = float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))
    return {
        "codec": setting.codec,
        "param": setting.param,
        "unit": "64^3 chunk" if setting.kind == "3d" else "axial slice",
        "bytes": size,
        "ratio": data.nbytes / max(size, 1),
        "encode_s": enc_s,
        "decode_ms": dec_ms,
        "mse": mse,
        "psnr_db": psnr,
        "max_abs_err": float(np.abs(diff).max()),
        "ssim": _ssim(data, restored, data_range),
        "exact": bool(mse == 0 and np.array_equal(restored, data)),
    }


def run_lossy(
    volumes: dict[str, np.ndarray], quick: bool = True, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Every applicable lossy setting on every volume; one row each (errors recorded, not raised)."""
    rows = []
    for name, data in volumes.items():
        for s in settings_for(data, quick):
            try:
                row = measure_lossy(data, s)
            except Exception as exc:  # noqa: BLE001 - a codec build may lack a feature
                row = {"codec": s.codec, "param": s.param, "error": f"{type(exc).__name__}: {exc}"}
            row["volume"] = name
            rows.append(row)
            if progress:
                progress(
                    f"[lossy {name}] {s.codec} {s.param}: "
                    + (
                        row.get("error")
                        or f"x{row['ratio']:.2f} PSNR {row['psnr_db']:.1f} dB SSIM {row['ssim']:.4f} "
                        f"MSE {row['mse']:.3g} decode {row['decode_ms']:.0f} ms"
                    )
                )
    return rows
