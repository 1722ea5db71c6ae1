"""Intensity scaling recorded at ingest (NIfTI ``scl_slope`` / ``scl_inter``, DICOM rescale kept
as slope / intercept): the one place that decides whether and how it applies.

Stored voxels keep their ingested dtype (int16 CT stays int16); readers that want physical values
(``Volume.read(scaled=True)``, the ``ml`` datasets) apply the scaling here, so every path agrees.
A slope of 0 or a non-finite slope means "no scaling" (the NIfTI rule); a missing or non-finite
intercept counts as 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def intensity_scaling(metadata: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(slope, intercept)`` to apply, or ``None`` when the recorded scaling is the identity."""
    slope, inter = metadata.get("scl_slope"), metadata.get("scl_inter")
    try:
        slope = float(slope) if slope is not None else None
        inter = float(inter) if inter is not None else 0.0
    except (TypeError, ValueError):
        return None
    if slope is None or slope == 0 or not math.isfinite(slope):
        return None
    if not math.isfinite(inter):
        inter = 0.0
    if slope == 1 and inter == 0:
        return None
    return slope, inter


def apply_scaling(target: np.ndarray, metadata: Mapping[str, Any]) -> np.ndarray:
    """Scales a floating-point ``target`` in place (no-op for identity scaling); returns it."""
    scaling = intensity_scaling(metadata)
    if scaling is not None:
        if target.dtype.kind != "f":
            raise TypeError(f"scaling needs a floating-point buffer, got {target.dtype}")
        slope, inter = scaling
        target *= target.dtype.type(slope)
        target += target.dtype.type(inter)
    return target


def scaled(data: np.ndarray, metadata: Mapping[str, Any], dtype: Any = np.float32) -> np.ndarray:
    """``data`` as ``dtype`` with the recorded scaling applied (a new array unless ``data`` already
    is a writeable array of ``dtype``)."""
    dtype = np.dtype(dtype)
    out = data if data.dtype == dtype and data.flags.writeable else data.astype(dtype, copy=True)
    return apply_scaling(out, metadata)
