"""The volumes a benchmark runs on: a user's file / store, or the built-in synthetic ones."""

from __future__ import annotations

import json
import os
from typing import Any

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


def _json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def ome_zarr_image(path: str) -> tuple[str, dict[str, Any]] | None:
    """``(group path, NGFF attributes)`` when ``path`` is an OME-Zarr image group (0.5: ``zarr.json``
    with ``attributes.ome``; 0.4: ``.zattrs`` with ``multiscales``), else ``None``."""
    v3 = _json(os.path.join(path, "zarr.json"))
    if v3 is not None and v3.get("node_type") == "group":
        attrs = v3.get("attributes") or {}
        if "ome" in attrs and "multiscales" in attrs["ome"]:
            return path, attrs
    v2 = _json(os.path.join(path, ".zattrs"))
    if v2 is not None and "multiscales" in v2 and os.path.exists(os.path.join(path, ".zgroup")):
        return path, v2
    return None


def _ome_zarr_target(path: str, level: int | None) -> tuple[str, dict[str, Any], int] | None:
    """The image group, its attributes and the level to read, for a group or a level array path."""
    path = os.path.normpath(path)
    found = ome_zarr_image(path)
    if found is not None:
        return found[0], found[1], 0 if level is None else level
    parent = ome_zarr_image(os.path.dirname(path))
    if parent is None:
        return None
    from radiobject.formats.ngff import read_image_attributes

    datasets = read_image_attributes(parent[1])[1]["multiscales"][0]["datasets"]
    paths = [str(d["path"]) for d in datasets]
    leaf = os.path.basename(path)
    if leaf not in paths:
        return None
    if level is not None and paths.index(leaf) != level:
        raise ImageReadError(path, f"is level {paths.index(leaf)} of {parent[0]}, but level {level} was asked for")
    return parent[0], parent[1], paths.index(leaf)


def load_ome_zarr(path: str, level: int | None = None) -> np.ndarray:
    """The first 3-D volume (``t`` = 0, ``c`` = 0) of an OME-Zarr image (NGFF 0.4 or 0.5) at
    ``level`` (default 0, or the level ``path`` names: ``img.ome.zarr/2``), as an (x, y, z) array
    (NGFF stores z, y, x; a 2-D image gets z = 1).

    Raises:
        ImageReadError: not an OME-Zarr image, no such level, or unreadable.
    """
    import zarr

    from radiobject.formats.ngff import NgffError, read_image_attributes

    target = _ome_zarr_target(path, level)
    if target is None:
        raise ImageReadError(path, "not an OME-Zarr image group (or one of its level arrays)")
    group, attrs, lvl = target
    try:
        ms = read_image_attributes(attrs)[1]["multiscales"][0]
        datasets = ms["datasets"]
        if not 0 <= lvl < len(datasets):
            raise ImageReadError(path, f"level {lvl} does not exist (levels 0-{len(datasets) - 1})")
        space = [(a.get("type") == "space") if isinstance(a, dict) else str(a) in "zyx" for a in ms["axes"]]
        arr = zarr.open_array(os.path.join(group, str(datasets[lvl]["path"])), mode="r")
        data = np.asarray(arr[tuple(slice(None) if sp else 0 for sp in space)])  # (z,) y, x
    except (NgffError, KeyError, IndexError, TypeError, OSError, ValueError) as exc:
        raise ImageReadError(path, f"cannot read OME-Zarr level {lvl}: {exc}") from exc
    return _first_3d(np.transpose(data, tuple(reversed(range(data.ndim)))))


def load_input(path: str, level: int | None = None) -> tuple[str, np.ndarray]:
    """``(name, 3-D array)`` from a NIfTI file, a DICOM series folder / file, a TIFF, an OME-Zarr
    image (any level, NGFF 0.4 / 0.5; ``level`` or a level array path), or a radiobject volume URI
    (Zarr or TileDB array). Raises ``ImageReadError`` naming the path when it is none."""
    from radiobject.formats.nifti import is_nifti_path, nifti_stem

    name = os.path.basename(os.path.normpath(path)) or path
    if _ome_zarr_target(path, None) is not None or level is not None:
        target = _ome_zarr_target(path, level)
        if target is None:
            raise ImageReadError(path, "--level applies to OME-Zarr images only")
        stem = os.path.basename(target[0]).removesuffix(".zarr").removesuffix(".ome")
        return f"{stem}_L{target[2]}", load_ome_zarr(path, level)
    if is_nifti_path(path):
        from radiobject.formats.nifti import read_nifti

        return nifti_stem(path), _first_3d(np.asarray(read_nifti(path).array))
    if path.lower().endswith(TIFF_SUFFIXES):
        from radiobject.formats.tiff import read_tiff

        return os.path.splitext(name)[0], _first_3d(np.asarray(read_tiff(path).array))
    from radiobject.storage.registry import BACKEND_NAMES, get_backend

    if any(get_backend(b).is_array(path) for b in BACKEND_NAMES):
        from radiobject.model.volume import Volume

        return name, _first_3d(Volume(path).to_numpy())
    if os.path.isdir(path) or path.lower().endswith(".dcm"):
        from radiobject.formats.dicom import read_dicom_series

        return name, _first_3d(np.asarray(read_dicom_series(path).array))
    raise ImageReadError(path, "not a NIfTI (.nii/.nii.gz), TIFF, DICOM series folder or radiobject volume")


def bench_volumes(
    inputs: list[str] | None, scale: float = 1.0, kinds: tuple[str, ...] = ("mri", "ct"), level: int | None = None
) -> dict[str, np.ndarray]:
    """The user's volumes when ``inputs`` is given (``level``: of OME-Zarr inputs), else the
    synthetic ``kinds`` at ``scale``."""
    if inputs:
        return dict(load_input(p, level) for p in inputs)
    return {k: synthetic_volume(k, scale) for k in kinds}
