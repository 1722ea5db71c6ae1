"""The in-memory (or lazy) result of reading one image file: pixels, geometry and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ArrayLike(Protocol):
    """Anything with ``shape``, ``dtype`` and numpy-style basic slicing (numpy, zarr, tifffile)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...

    def __getitem__(self, key: Any) -> Any: ...


@dataclass
class ImageData:
    """One image as read from a file.

    Attributes:
        array: the voxels, in array order (x, y, z[, t, ...] for NIfTI / DICOM; any ``ArrayLike``
            so that a large TIFF can stay lazy and be written region by region).
        affine: 4x4 float64 voxel -> world (RAS+, mm) matrix.
        metadata: JSON-serialisable facts kept with the volume (e.g. ``scl_slope``, DICOM tags).
        source: the path (or description) it came from, recorded in ``obs``.
    """

    array: ArrayLike
    affine: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)
