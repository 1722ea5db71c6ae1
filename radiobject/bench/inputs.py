"""The volumes a benchmark runs on: a user's file / store, or the built-in synthetic ones."""

from __future__ import annotations

import os

import numpy as np

from radiobject.bench.synthetic import synthetic_volume
from radiobject.errors import ImageReadError

TIFF_SUFFIXES = (".tif", ".tiff")


def _first_3d(array: np.ndarray) -> np.ndarray:
    """The first 3-D volume of an (x, y, z, ...) array (4-D: time / channel 0)."""
    array = np.asarray(array)
    while array.ndim > 3:
        array = array[..., 0]
    if array.ndim < 3:
        array = array.reshape(array.shape + (1,) * (3 - array.ndim))
    return np.ascontiguousarray(array)


def load_input(path: str) -> tuple[str, np.ndarray]:
    """``(name, 3-D array)`` from a NIfTI file, a DICOM series folder / file, a TIFF, or a radiobject
    volume URI (Zarr or TileDB array). Raises ``ImageReadError`` naming the path when it is none."""
    from radiobject.formats.nifti import is_nifti_path, nifti_stem

    name = os.path.basename(os.path.normpath(path)) or path
    if is_nifti_path(path):
        from radiobject.formats.nifti import read_nifti

        return nifti_stem(path), _first_3d(read_nifti(path).array)
    if path.lower().endswith(TIFF_SUFFIXES):
        from radiobject.formats.tiff import read_tiff

        return os.path.splitext(name)[0], _first_3d(np.asarray(read_tiff(path).array))
    from radiobject.storage.registry import BACKEND_NAMES, get_backend

    if any(get_backend(b).is_array(path) for b in BACKEND_NAMES):
        from radiobject.model.volume import Volume

        return name, _first_3d(Volume(path).to_numpy())
    if os.path.isdir(path) or path.lower().endswith(".dcm"):
        from radiobject.formats.dicom import read_dicom_series

        return name, _first_3d(read_dicom_series(path).array)
    raise ImageReadError(path, "not a NIfTI (.nii/.nii.gz), TIFF, DICOM series folder or radiobject volume")


def bench_volumes(inputs: list[str] | None, scale: float = 1.0, kinds: tuple[str, ...] = ("mri", "ct")) -> dict[str, np.ndarray]:
    """The user's volumes when ``inputs`` is given, else the synthetic ``kinds`` at ``scale``."""
    if inputs:
        return dict(load_input(p) for p in inputs)
    return {k: synthetic_volume(k, scale) for k in kinds}
