"""napari reader (npe2 manifest ``radiobject/napari.yaml``): open a store, a collection or a volume.

Drag a store folder into napari (or ``napari --plugin radiobject STORE``): the first subject's
volumes open, image collections as image layers, label collections (a label map, or integer
volumes with class counts) as labels layers, each in millimetres: ``scale`` is the voxel
spacing and ``translate`` the origin when the affine is axis-aligned; otherwise the full
``affine`` is given. A collection folder opens its first volume; a volume folder
(``STORE/collections/<name>/volumes/<obs_id>``) opens that volume. 4D volumes open one layer
per channel. ``read_store(path, subject=...)`` is the same for any subject, from Python.

napari itself is not needed to import this module; the reader returns napari ``LayerData``
tuples ``(data, kwargs, layer_type)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LayerData", "get_reader", "read_store", "volume_layer"]

LayerData = tuple[np.ndarray, dict[str, Any], str]
_STORE_MARKER, _COLLECTION_MARKER = "radiobject.json", "collection.json"
#: TileDB's own entries inside a group folder (``volumes/__meta``, ...): not volumes.
_TILEDB_INTERNALS = frozenset(
    {
        "__meta",
        "__group",
        "__tiledb_group.tdb",
        "__schema",
        "__fragments",
        "__commits",
        "__fragment_meta",
        "__labels",
        "__enumerations",
    }
)


def _kind(path: Path) -> str | None:
    """``store``, ``collection``, ``volume`` or None (not ours)."""
    if (path / _STORE_MARKER).is_file():
        return "store"
    if (path / _COLLECTION_MARKER).is_file():
        return "collection"
    if (
        path.parent.name == "volumes"
        and (path.parent.parent / _COLLECTION_MARKER).is_file()
        and path.name not in _TILEDB_INTERNALS
    ):
        return "volume"
    return None


def get_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[LayerData]] | None:
    """The npe2 reader hook: a reader function when ``path`` is a radiobject store, collection
    or volume folder, else ``None`` (napari then asks other plugins)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or any(_kind(Path(str(p).rstrip("/"))) is None for p in paths):
        return None
    return _read_paths


def _read_paths(path: str | Sequence[str]) -> list[LayerData]:
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        layers += read_store(str(p).rstrip("/"))
    return layers


def _geometry(affine: np.ndarray) -> dict[str, Any]:
    lin = affine[:3, :3]
    if np.allclose(lin, np.diag(np.diag(lin))):
        return {"scale": tuple(float(v) for v in np.diag(lin)), "translate": tuple(float(v) for v in affine[:3, 3])}
    return {"affine": np.asarray(affine, dtype=np.float64)}


def volume_layer(volume: Any, name: str, label: bool = False, label_map: Any = None) -> list[LayerData]:
    """LayerData for one stored volume (one per channel for 4D), in millimetres."""
    data = volume.to_numpy() if label else volume.to_numpy(scaled=True)
    meta = {
        "obs_id": volume.obs_id,
        "affine": volume.affine.tolist(),
        "spacing": list(volume.spacing),
        "source": volume.info.source,
    }
    if label_map is not None:
        meta["label_names"] = {int(k): v for k, v in label_map.names.items()}
    geo = _geometry(volume.affine)
    kind = "labels" if label else "image"
    if data.ndim <= 3:
        return [(data, {"name": name, "metadata": meta, **geo}, kind)]
    flat = data.reshape(data.shape[:3] + (-1,))
    return [
        (np.ascontiguousarray(flat[..., c]), {"name": f"{name}[{c}]", "metadata": {**meta, "channel": c}, **geo}, kind)
        for c in range(flat.shape[-1])
    ]


def read_store(path: str, *, subject: str | None = None, collections: Sequence[str] | None = None) -> list[LayerData]:
    """Layers of ``subject`` (default: the first) from a store folder, or of the volume /
    collection folder ``path`` points at. Label collections become labels layers (drawn last,
    on top)."""
    from radiobject.model.collection import VolumeCollection
    from radiobject.model.labels import get_label_map, is_label_collection
    from radiobject.model.radi_object import RadiObject

    p = Path(path)
    kind = _kind(p)
    if kind == "volume":
        coll = VolumeCollection(str(p.parent.parent))
        lab = is_label_collection(coll)
        return volume_layer(coll.volume(p.name), f"{coll.name} {p.name}", lab, get_label_map(coll) if lab else None)
    if kind == "collection":
        coll = VolumeCollection(str(p))
        if not len(coll):
            return []
        ids = coll.obs_ids
        oid = ids[0] if subject is None else str(coll.by_subject(subject).obs_id)
        lab = is_label_collection(coll)
        return volume_layer(coll.volume(oid), f"{coll.name} {oid}", lab, get_label_map(coll) if lab else None)
    if kind != "store":
        raise ValueError(f"{path}: not a radiobject store, collection or volume folder")
    radi = RadiObject(str(p))
    sid = subject if subject is not None else (radi.obs_subject_ids[0] if len(radi) else None)
    if sid is None:
        return []
    images: list[LayerData] = []
    labels: list[LayerData] = []
    for name in collections or radi.collection_names:
        coll = radi[name]
        if sid not in set(coll.obs_subject_ids):
            continue
        lab = is_label_collection(coll)
        layers = volume_layer(coll.by_subject(sid), f"{name} {sid}", lab, get_label_map(coll) if lab else None)
        (labels if lab else images).extend(layers)
    return images + labels
