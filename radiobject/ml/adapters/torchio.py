"""TorchIO: a ``tio.SubjectsDataset`` of lazily read ``ScalarImage`` / ``LabelMap`` with the real affine.

Each subject holds one image per collection named in ``modalities`` (named by the collection), plus
``"image"``: the image (non-label) collections stacked as float32 channels, unless ``stack=False``,
and a ``LabelMap`` named ``"label"`` for the label collection; voxels are read from the store when
TorchIO loads the image (in the worker that needs it: the dataset pickles without open handles).
Affines are the volumes' own (RAS, as TorchIO's NIfTI reader gives them), so ``RandomAffine``,
``Resample`` and ``ToCanonical`` act in millimetres, and ``tio.Queue`` with ``UniformSampler`` /
``LabelSampler`` / ``WeightedSampler`` works as over files. The subject carries ``subject_id``.

Per-collection images come as TorchIO's own readers give the source file: the stored dtype (int16
stays int16, float64 stays float64; uint16 as int32 and wider unsigned as int64, which torch can
compute with), float32 when a NIfTI ``scl_slope`` / ``scl_inter`` applies. A label collection
(``model.labels.is_label_collection``: a label map, or integer volumes with a label-like name,
class counts or the NIfTI label intent) is always a ``LabelMap`` in its integer dtype, also when it
is named in ``modalities``: TorchIO then resamples it with nearest neighbour, never interpolates it,
and it is left out of the stacked ``"image"``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radiobject.ml.reader import VolumeReader
from radiobject.ml.regions import _label_dtype
from radiobject.model.scaling import intensity_scaling, scaled

__all__ = ["StoreImageReader", "collection_voxels", "subjects_dataset"]

#: What a :class:`StoreImageReader` reads: the stacked image channels, the reader's label, or one
#: collection as an image (``"scalar"``) or as a label map (``"labelmap"``).
READ_KINDS = ("image", "label", "scalar", "labelmap")


class StoreImageReader:
    """TorchIO ``reader=``: subject ``index`` of ``reader``: its image channels (``what="image"``),
    its label (``"label"``), or its collection ``collection`` as an image (``"scalar"``) or a label
    map (``"labelmap"``), in the dtype TorchIO's file readers give (:func:`collection_voxels`)."""

    def __init__(self, reader: VolumeReader, index: int, what: str, collection: str | None = None) -> None:
        if what not in READ_KINDS:
            raise ValueError(f"what must be one of {READ_KINDS}, not {what!r}")
        if what in ("scalar", "labelmap") and collection is None:
            raise ValueError(f"what={what!r} needs the collection to read")
        self.reader, self.index, self.what, self.collection = reader, int(index), what, collection

    def __call__(self, path: Path | str) -> tuple[torch.Tensor, np.ndarray]:
        r = self.reader
        if self.what == "label":
            data = r.read_label(self.index)
        elif self.what == "image":
            data = r.read_image(self.index)
        else:
            # the ignore below: __init__ refuses "scalar" / "labelmap" without a collection
            data = collection_voxels(r, self.index, self.collection, label=self.what == "labelmap")  # type: ignore[arg-type]
        return torch.from_numpy(np.ascontiguousarray(data)), r.affine(self.index)


def collection_voxels(reader: VolumeReader, index: int, collection: str, *, label: bool = False) -> np.ndarray:
    """Channels-first voxels ``(C, x, y, z)`` of one collection of subject ``index`` (4D volumes:
    their trailing axes as channels), typed as TorchIO's readers type the source file: ``label``
    gives the label dtype of the loaders (integers; float volumes must hold whole numbers); an
    image keeps its stored dtype unless a recorded scaling applies (then float32, float64 for a
    float64 volume); uint16 becomes int32, wider unsigned ints and bool int64 / uint8."""
    raw = np.asarray(reader.read_raw(index, collection))
    data = raw[None] if raw.ndim == 3 else np.moveaxis(raw.reshape(*raw.shape[:3], -1), -1, 0)
    if label:
        return _label_dtype(data, collection)
    meta = reader.volume(index, collection).metadata
    if intensity_scaling(meta) is not None:
        return scaled(data, meta, np.float64 if data.dtype == np.float64 else np.float32)
    if data.dtype == np.bool_:
        return data.astype(np.uint8)
    if data.dtype.kind == "u" and data.dtype.itemsize >= 2:  # torch computes with neither
        return data.astype(np.int32 if data.dtype.itemsize == 2 else np.int64)
    return data


def subjects_dataset(
    radi: Any,
    *,
    modalities: Sequence[str] | str | None = None,
    label: str | None = None,
    subjects: Sequence[str] | None = None,
    split: str | None = None,
    fold: int | None = None,
    incomplete: str = "error",
    stack: bool = True,
    transform: Callable[[Any], Any] | None = None,
) -> Any:
    """A ``tio.SubjectsDataset`` over ``radi`` (roles, splits and completeness as the loaders').

    ``modalities``: collections, one image each (default: every collection that is not a label;
    a label collection named here is a ``LabelMap``); ``label``: the label collection (a
    ``LabelMap`` named ``"label"``); ``stack``: also an ``"image"`` ``ScalarImage`` with every
    image (non-label) collection as a float32 channel (3D ones only).
    """
    import torchio as tio

    from radiobject.ml.loaders import build_reader
    from radiobject.model.labels import is_label_collection

    reader = build_reader(radi, modalities, label, subjects=subjects, split=split, fold=fold, incomplete=incomplete)
    store = reader.radi
    labels = {name for name in reader.modalities if is_label_collection(store[name])}
    images = [k for k, name in enumerate(reader.modalities) if name not in labels]
    stacked = None
    if stack and images and len(images) < len(reader.modalities):  # the image channels only
        stacked = _reader_of(reader, images)
    elif stack and images:
        stacked = reader
    # TorchIO re-creates cropped images with the same path and checks that it exists: the path names
    # the store folder (a temporary folder for remote stores); the reader, not the path, finds the voxels.
    where = reader.location.uri if os.path.isdir(reader.location.uri) else tempfile.gettempdir()
    items = []
    for i, sid in enumerate(reader.subject_ids):
        subject: dict[str, Any] = {}
        for name in reader.modalities:
            kind, cls = ("labelmap", tio.LabelMap) if name in labels else ("scalar", tio.ScalarImage)
            subject[name] = cls(path=where, reader=StoreImageReader(reader, i, kind, name), verify_path=False)
        if stacked is not None and "image" not in subject:
            subject["image"] = tio.ScalarImage(
                path=where, reader=StoreImageReader(stacked, i, "image"), verify_path=False
            )
        if reader.label:
            subject["label"] = tio.LabelMap(path=where, reader=StoreImageReader(reader, i, "label"), verify_path=False)
        items.append(tio.Subject(subject_id=sid, **subject))
    return tio.SubjectsDataset(items, transform=transform)


def _reader_of(reader: VolumeReader, keep: Sequence[int]) -> VolumeReader:
    """``reader`` over the modalities at positions ``keep`` only (no label; same subjects and cache)."""
    return VolumeReader(
        reader.location,
        tuple(reader.modalities[k] for k in keep),
        None,
        reader.subject_ids,
        tuple(tuple(ids[k] for k in keep) for ids in reader.obs_ids),
        reader.shapes,
        reader.affines,
        reader.cache,
        tuple(tuple(v[k] for k in keep) for v in reader.versions) if reader.versions else (),
    )
