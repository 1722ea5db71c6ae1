"""Philips display vs precise (floating-point) scaling.

Philips MR images carry two scalings of the stored value ``SV``:

* display: ``D = SV * RS + RI`` with RescaleSlope / RescaleIntercept, the DICOM modality LUT that
  every standard reader applies; what the scanner console shows.
* precise ("floating point"): ``P = D / (RS * SS)`` with the private Scale Slope (2005,100E)
  (Chenevert et al., PMC3998685); comparable between scans of different gains, what dcm2niix
  writes by default (``-p y``).

``philips_scaling="display"`` (the default) keeps the modality LUT, ``"precise"`` converts to
``P`` (float32). The ``RADIOBJECT_PHILIPS_SCALING`` environment variable sets the default
(``radiobject ingest --philips-scaling`` sets it for the run and its worker processes). What was
applied is recorded in ``metadata["philips_scaling"]`` of every Philips series.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from radiobject.formats.dicom.frames import Frame, _num

MODES = ("display", "precise")
ENV = "RADIOBJECT_PHILIPS_SCALING"
_SCALE_SLOPE = (0x2005, 0x100E)
_PRIVATE_PER_FRAME = (0x2005, 0x140F)


def philips_mode(value: str | None) -> str:
    """The scaling to apply: ``value``, else ``$RADIOBJECT_PHILIPS_SCALING``, else ``"display"``."""
    mode = value if value is not None else (os.environ.get(ENV) or "display")
    mode = str(mode).strip().lower()
    if mode not in MODES:
        raise ValueError(f"philips_scaling must be one of {MODES}, not {mode!r}")
    return mode


def is_philips(ds: Dataset) -> bool:
    """True for a Philips data set (Manufacturer)."""
    return "PHILIPS" in str(ds.get("Manufacturer", "")).upper()


def _scale_slope(ds: Dataset, frame: int | None) -> float | None:
    item: Any = ds
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        per = ds.PerFrameFunctionalGroupsSequence
        if frame < len(per) and _PRIVATE_PER_FRAME in per[frame] and len(per[frame][_PRIVATE_PER_FRAME].value):
            item = per[frame][_PRIVATE_PER_FRAME].value[0]
    if _SCALE_SLOPE not in item and _SCALE_SLOPE in ds:
        item = ds
    if _SCALE_SLOPE not in item:
        return None
    raw = item[_SCALE_SLOPE].value
    if isinstance(raw, bytes):
        raw = np.frombuffer(raw[:4], dtype="<f4")[0] if len(raw) >= 4 else None
    elif isinstance(raw, (list, tuple)):
        raw = raw[0] if raw else None
    v = _num(raw, 0.0)
    return v if np.isfinite(v) and v != 0 else None


def apply_philips(
    values: np.ndarray, frames: list[Frame], datasets: list[Dataset], mode: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Convert display values (one image per entry of axis 0) to precise ones when asked.

    Returns:
        ``(values, record)``; ``record`` is ``metadata["philips_scaling"]``: the ``mode`` applied,
        the ``requested`` one, the ``scale_slope`` (None when it varies), and a ``reason`` when
        precise scaling was asked for but the images lack a usable Scale Slope.
    """
    ss = [_scale_slope(datasets[f.ds_index], f.frame) for f in frames]
    uniform = len({s for s in ss}) == 1
    record: dict[str, Any] = {
        "requested": mode,
        "mode": "display",
        "scale_slope": ss[0] if uniform else None,
        "formula": "display = SV * RS + RI; precise = display / (RS * SS)",
    }
    if mode != "precise":
        return values, record
    if any(s is None for s in ss):
        record["reason"] = "no usable Scale Slope (2005,100E) on every image: display values kept"
        return values, record
    shape = (-1,) + (1,) * (values.ndim - 1)
    denom = np.asarray([f.slope * float(s or 1.0) for f, s in zip(frames, ss, strict=True)], dtype=np.float64)
    out = (values.astype(np.float64) / denom.reshape(shape)).astype(np.float32)
    record["mode"] = "precise"
    return out, record


__all__ = ["ENV", "MODES", "apply_philips", "is_philips", "philips_mode"]
