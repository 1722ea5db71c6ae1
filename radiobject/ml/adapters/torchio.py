"""TorchIO: a ``tio.SubjectsDataset`` of lazily read ``ScalarImage`` / ``LabelMap`` with the real affine.

Each subject holds one ``ScalarImage`` per image collection (named by the collection, plus
``"image"``: all of them stacked as channels, unless ``stack=False``) and a ``LabelMap`` named
``"label"`` for the label collection; voxels are read from the store when TorchIO loads the image
(in the worker that needs it: the dataset pickles without open handles). Affines are the volumes'
own (RAS, as TorchIO's NIfTI reader gives them), so ``RandomAffine``, ``Resample`` and
``ToCanonical`` act in millimetres, and ``tio.Queue`` with ``UniformSampler`` / ``LabelSampler`` /
``WeightedSampler`` works as over files. The subject carries ``subject_id``.
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

__all__ = ["StoreImageReader", "subjects_dataset"]


class StoreImageReader:
    """TorchIO ``reader=``: subject ``index`` of ``reader``: its image channels, or its label (``what="label"``)."""

    def __init__(self, reader: VolumeReader, index: int, what: str) -> None:
        self.reader, self.index, self.what = reader, int(index), what

    def __call__(self, path: Path | str) -> tuple[torch.Tensor, np.ndarray]:
        r = self.reader
        read = r.read_label if self.what == "label" else r.read_image
        data = np.ascontiguousarray(read(self.index))
        return torch.from_numpy(data), r.affine(self.index)


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

    ``modalities``: image collections (default: every collection that is not a label);
    ``label``: the label collection (a ``LabelMap`` named ``"label"``); ``stack``: also an
    ``"image"`` ``ScalarImage`` with every modality as a channel (3D modalities only).
    """
    import torchio as tio

    from radiobject.ml.loaders import build_reader

    reader = build_reader(radi, modalities, label, subjects=subjects, split=split, fold=fold, incomplete=incomplete)
    single = {
        name: VolumeReader(
            reader.location,
            (name,),
            None,
            reader.subject_ids,
            tuple((ids[k],) for ids in reader.obs_ids),
            reader.shapes,
            reader.affines,
            reader.cache,
        )
        for k, name in enumerate(reader.modalities)
    }
    # TorchIO re-creates cropped images with the same path and checks that it exists: the path names
    # the store folder (a temporary folder for remote stores); the reader, not the path, finds the voxels.
    where = reader.location.uri if os.path.isdir(reader.location.uri) else tempfile.gettempdir()
    items = []
    for i, sid in enumerate(reader.subject_ids):
        images: dict[str, Any] = {}
        for name in reader.modalities:
            images[name] = tio.ScalarImage(
                path=where, reader=StoreImageReader(single[name], i, "image"), verify_path=False
            )
        if stack and "image" not in images:
            images["image"] = tio.ScalarImage(
                path=where, reader=StoreImageReader(reader, i, "image"), verify_path=False
            )
        if reader.label:
            images["label"] = tio.LabelMap(path=where, reader=StoreImageReader(reader, i, "label"), verify_path=False)
        items.append(tio.Subject(subject_id=sid, **images))
    return tio.SubjectsDataset(items, transform=transform)
