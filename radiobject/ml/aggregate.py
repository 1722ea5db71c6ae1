"""Grid inference aggregation into a NEW collection of the store, out of core.

``GridAggregator`` receives model outputs for the grid patches of ``create_inference_dataloader``
(in any order), accumulates them per volume (a running sum and a coverage count, only for
volumes with patches still missing), and as soon as a volume's last patch arrives it averages the
overlaps, optionally takes the arg-max, and writes the volume through the store's own write path
(``RadiObject.add_collection`` -> ``VolumeCollection.write`` with an ``IngestItem``) with the
subject's affine and the source volume's header metadata (units, sform / qform codes, qform
parameters, pixdim; ``formats.nifti_header.derived_metadata``), so an exported prediction has the
source's geometry header. Label predictions (``argmax``) carry the label map given, else that of
the reader's label collection. Memory holds only the volumes in flight (one or two with an ordered loader),
never the whole prediction set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from radiobject.errors import AlignmentError, StoreExistsError
from radiobject.formats.image import ImageData
from radiobject.formats.nifti_header import derived_metadata
from radiobject.ml.datasets import GridPatchDataset
from radiobject.ml.errors import LoaderArgumentError
from radiobject.ml.sampling import patch_slices
from radiobject.model.bulk import IngestItem
from radiobject.model.collection import VolumeCollection
from radiobject.model.ids import validate_id
from radiobject.model.labels import LabelMap, get_label_map, set_label_map
from radiobject.model.options import WriteOptions
from radiobject.model.radi_object import RadiObject

__all__ = ["CollectionExistsError", "GridAggregator", "PredictionError", "write_predictions"]


class CollectionExistsError(StoreExistsError, ValueError):
    """The collection predictions were to be written into exists already (``exist_ok`` not given)."""


class PredictionError(AlignmentError):
    """Model outputs do not fit the grid (shape, channels, batch size, index) or cannot be stored."""

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(subject, reason)
        if not subject:  # not one subject's: the message is the reason alone
            self.args = (reason,)


def _to_integer(values: np.ndarray, dtype: np.dtype, subject: str) -> np.ndarray:
    """Averaged predictions as an integer ``dtype``: rounded; out of range or not finite is an error."""
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    finite = np.isfinite(values)
    if not finite.all():
        raise PredictionError(
            subject, f"predictions hold {int((~finite).sum())} non-finite values; cannot store as {dtype}"
        )
    lo, hi = (info.min, info.max) if info is not None else (0, 1)
    if values.size and (values.min() < lo - 0.5 or values.max() > hi + 0.5):
        raise PredictionError(
            subject,
            f"predictions span [{values.min():g}, {values.max():g}], outside {dtype} [{lo}, {hi}]; pass a wider dtype",
        )
    return np.rint(values).astype(dtype)


class GridAggregator:
    """Collects patch predictions and writes each finished volume into collection ``name``.

    Args:
        radi: the store to write into (a new collection is created; it must not exist yet unless
            ``exist_ok``). With N ranks (``create_inference_dataloader(..., world_size=N, rank=r)``)
            every rank passes ``exist_ok=True``: creation is race-free, each rank commits its own
            subjects under the collection's write lock, and ``finalize`` may run on every rank.
        dataset: the ``GridPatchDataset`` of the inference loader (its grid tells when a volume is
            complete).
        name: the new collection's name.
        argmax: store ``argmax`` over channels (uint8 labels) instead of the averaged channels.
        dtype: stored dtype of averaged predictions (float32 default).
        options: write options (default: the store's backend).
        label_map: label map (value -> name) stored with an ``argmax`` collection; default the
            label map of the reader's label collection, when it has one.
    """

    def __init__(
        self,
        radi: RadiObject,
        dataset: GridPatchDataset,
        name: str,
        *,
        argmax: bool = False,
        dtype: Any = np.float32,
        options: WriteOptions | None = None,
        exist_ok: bool = False,
        label_map: LabelMap | Mapping[Any, Any] | str | None = None,
    ) -> None:
        if not isinstance(dataset, GridPatchDataset):
            raise LoaderArgumentError(
                "GridAggregator needs the GridPatchDataset of create_inference_dataloader, "
                f"got {type(dataset).__name__}"
            )
        validate_id(name, "collection name")
        self.radi = RadiObject.open(radi.location)  # fresh: sees collections written since radi was opened
        if name in self.radi.collection_names and not exist_ok:
            raise CollectionExistsError(radi.uri, f"collection {name!r} already exists; choose a new name")
        self.dataset = dataset
        self.name = name
        self.argmax = argmax
        self.dtype = np.dtype(dtype)
        self.options = options or WriteOptions(backend=radi.backend_name)
        self._sum: dict[int, np.ndarray] = {}
        self._count: dict[int, np.ndarray] = {}
        self._seen: dict[int, set[int]] = {}
        self.written: list[str] = []
        self.label_map = LabelMap.parse(label_map) if label_map is not None else None
        if self.label_map is None and argmax and dataset.reader.label:
            self.label_map = get_label_map(self.radi[dataset.reader.label])

    @property
    def in_flight(self) -> int:
        """Volumes with some but not all patches received."""
        return len(self._sum)

    def add_batch(self, predictions: torch.Tensor | np.ndarray, batch: dict[str, Any]) -> list[str]:
        """Adds a batch of outputs ``(B, C, *patch)`` for the batch's samples; returns subjects written."""
        preds = (
            predictions.detach().float().cpu().numpy()
            if isinstance(predictions, torch.Tensor)
            else np.asarray(predictions, dtype=np.float32)
        )
        if not isinstance(batch, dict) or "index" not in batch:
            raise PredictionError("", f"batch has no 'index' (pass the batch of the inference loader): {type(batch)}")
        indices = batch["index"]
        indices = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
        if preds.ndim < 1 or preds.shape[0] != len(indices):
            raise PredictionError(
                "", f"predictions of shape {preds.shape} for a batch of {len(indices)} samples (need (B, C, *patch))"
            )
        done = []
        for k, index in enumerate(indices):
            done += self.add(int(index), preds[k])
        return done

    def add(self, index: int, prediction: np.ndarray) -> list[str]:
        """Adds the output ``(C, *patch)`` of grid sample ``index``; writes its volume when complete."""
        ds = self.dataset
        if not 0 <= int(index) < len(ds):
            raise PredictionError("", f"sample index {index} is not one of the {len(ds)} grid patches")
        subj = ds.subject_of(index)
        shape = ds.reader.shapes[subj]
        sid = ds.reader.subject_ids[subj]
        pred = np.asarray(prediction, dtype=np.float32)
        if pred.ndim == 3:
            pred = pred[None]
        if pred.ndim != 4 or tuple(pred.shape[1:]) != ds.patch_size:
            raise PredictionError(sid, f"prediction of shape {pred.shape} does not match patch {ds.patch_size}")
        if subj in self._sum and self._sum[subj].shape[0] != pred.shape[0]:
            raise PredictionError(
                sid,
                f"prediction has {pred.shape[0]} channels, earlier patches of this volume had "
                f"{self._sum[subj].shape[0]}",
            )
        seen = self._seen.setdefault(subj, set())
        if index in seen:
            return []
        if subj not in self._sum:
            self._sum[subj] = np.zeros((pred.shape[0], *shape), np.float32)
            self._count[subj] = np.zeros(shape, np.uint16)
        origin = ds.origins[subj][index - ds.patches_of(subj).start]
        src, dst = patch_slices(origin, ds.patch_size, shape)
        self._sum[subj][(slice(None), *src)] += pred[(slice(None), *dst)]
        self._count[subj][src] += 1
        seen.add(index)
        if len(seen) == len(ds.patches_of(subj)):
            return [self._write(subj)]
        return []

    def _write(self, subj: int) -> str:
        total, count = self._sum.pop(subj), self._count.pop(subj)
        self._seen[subj] = set(self.dataset.patches_of(subj))
        mean = total / np.maximum(count, 1)[None]
        reader = self.dataset.reader
        sid = reader.subject_ids[subj]
        if self.argmax:  # class numbers: uint8 up to 256 classes, wider beyond (never wrapped)
            out = np.argmax(mean, axis=0).astype(np.uint8 if mean.shape[0] <= 256 else np.uint16)
        else:
            out = (mean[0] if mean.shape[0] == 1 else np.moveaxis(mean, 0, -1)).astype(
                np.float32 if self.dtype.kind in "iub" else self.dtype
            )
            if self.dtype.kind in "iub":
                out = _to_integer(out, self.dtype, sid)
        source = reader.volume(subj, reader.modalities[0]).metadata
        meta = derived_metadata(source, intent="label" if self.argmax else None, prediction_of=list(reader.modalities))
        image = ImageData(out, reader.affine(subj), meta, f"prediction:{sid}")
        self.radi.add_collection(self.name, [IngestItem(sid, sid, image, {}, image.source)], options=self.options)
        if self.label_map is not None and not self.written:
            set_label_map(RadiObject.open(self.radi.location)[self.name], self.label_map)
        self.written.append(sid)
        return sid

    def finalize(self, subjects: Sequence[str] | None = None) -> VolumeCollection:
        """Checks that every volume was completed and returns the new collection (compacted)."""
        if self._sum:
            missing = [self.dataset.reader.subject_ids[s] for s in self._sum]
            raise PredictionError(
                missing[0],
                f"collection {self.name!r}: patches missing for subjects {missing}; nothing was written for them",
            )
        radi = RadiObject.open(self.radi.location)
        coll = radi[self.name]
        coll.compact()
        return coll


def write_predictions(
    radi: RadiObject,
    name: str,
    predictions: Mapping[str, np.ndarray | torch.Tensor],
    *,
    like: str,
    label_map: LabelMap | Mapping[Any, Any] | str | None = None,
    options: WriteOptions | None = None,
) -> VolumeCollection:
    """Writes whole-volume predictions ``{subject: array}`` (e.g. from MONAI's
    ``sliding_window_inference``; dtype kept, ``(x, y, z)``, ``(x, y, z, c)`` or channel-first
    ``(c, x, y, z)``, stored as ``(x, y, z, c)``) as the new
    collection ``name``, each with the affine and geometry header of its subject's volume in
    collection ``like`` (as ``GridAggregator`` does). ``label_map`` marks a label prediction: it is
    stored with the collection and the volumes get the NIfTI intent ``label``. Every shape is
    checked against the source before anything is written (``AlignmentError`` naming the subject);
    ``name`` must be a new collection.
    """
    validate_id(name, "collection name")
    if name in RadiObject.open(radi.location).collection_names:
        raise CollectionExistsError(radi.uri, f"collection {name!r} already exists; choose a new name")
    source = radi[like]
    arrays = {
        str(sid): (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
        for sid, a in predictions.items()
    }
    vols = {sid: source.by_subject(sid) for sid in arrays}
    for sid, arr in list(arrays.items()):
        grid = tuple(vols[sid].shape[:3])
        if arr.ndim == 4 and tuple(arr.shape[:3]) != grid and tuple(arr.shape[1:]) == grid:
            # MONAI / torch channel-first (c, x, y, z), e.g. sliding_window_inference(...)[0]
            arrays[sid] = arr = np.ascontiguousarray(np.moveaxis(arr, 0, -1))
        if tuple(arr.shape[:3]) != grid:
            raise AlignmentError(
                sid,
                f"prediction of shape {arr.shape} does not match {vols[sid].shape} in "
                f"collection {like!r} of {radi.uri}",
            )
    intent = "label" if label_map is not None else None

    def items() -> Any:
        for sid, arr in arrays.items():
            meta = derived_metadata(vols[sid].metadata, intent=intent, prediction_of=[like])
            image = ImageData(arr, vols[sid].affine, meta, f"prediction:{sid}")
            yield IngestItem(sid, sid, image, {}, image.source)

    radi.add_collection(name, items(), options=options or WriteOptions(backend=radi.backend_name))
    coll = RadiObject.open(radi.location)[name]
    if label_map is not None:
        set_label_map(coll, label_map)
    return coll
