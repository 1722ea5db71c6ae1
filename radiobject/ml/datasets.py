"""Thin map-style datasets over a ``VolumeReader``: full volume, random patch, 2D slice, grid patch.

Samples are plain dicts that MONAI dict transforms (``keys=["image", "label"]``) and TorchIO
transforms (``include=["image", "label"], label_keys=["label"]``) accept unchanged:

* ``image``: float32 tensor ``(C, *spatial)``, modalities stacked as channels;
* ``label``: integer tensor ``(1, *spatial)`` (when the reader has a label collection);
* ``subject_id`` (str), ``index`` (int, the sample index);
* ``affine``: float64 ``(4, 4)`` of the sample itself (shifted to the patch / slice origin);
* ``spacing``: float64 ``(3,)`` mm; ``patch_origin``: int64 ``(3,)`` voxel origin in the volume.

Randomness is a pure function of ``(seed, epoch, index)`` (``ml.sampling.item_rng`` with the global
sample index), so patches differ every epoch, a rerun repeats them, and they do not depend on the
world size or on ``num_workers`` (an elastic resume draws the very patches the first run would have).
Indices may be ints or ``(epoch, index)`` pairs (what ``ml.distributed.RadiSampler`` yields, so the
epoch reaches persistent workers). An exception while loading surfaces as a ``SampleError`` naming
the subject.

Batched reads: the loader factories set ``batched_reads`` and use :func:`collate`; then, when a
dataset has no per-sample transforms, ``__getitems__`` reads a whole batch of patches straight into
one preallocated ``(B, C, *patch)`` buffer (one copy from the cache, or the store decoding straight
into it) and returns it already collated, identical to collating the samples one by one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from radiobject.ml.cache import InMemoryCache, NoCache
from radiobject.ml.collate import CollatedBatch, batch_buffer, collate
from radiobject.ml.errors import SampleError, WorkerFailure, first_key, sample_error
from radiobject.ml.reader import VolumeReader
from radiobject.ml.sampling import (
    class_ratio_patch_origins,
    foreground_patch_origins,
    grid_patch_origins,
    item_rng,
    uniform_patch_origins,
)

__all__ = [
    "GridPatchDataset",
    "LoadingMode",
    "PatchDataset",
    "RadiDataset",
    "SampleError",
    "SliceDataset",
    "VolumeDataset",
    "collate",
]

Transform = Callable[[dict[str, Any]], Any]


class LoadingMode(enum.StrEnum):
    """What one sample is: a whole volume, a random patch, or a 2D slice."""

    FULL_VOLUME = "full_volume"
    PATCH = "patch"
    SLICE_2D = "slice_2d"


class RadiDataset(Dataset):
    """Base class: index bookkeeping, epoch, transforms and error naming. Subclasses build samples."""

    def __init__(self, reader: VolumeReader, *, transforms: Transform | None = None, seed: int = 0) -> None:
        self.reader = reader
        self.transforms = transforms
        self.seed = int(seed)
        self.epoch = 0
        #: When set, every epoch draws like this one (validation: the same patches every epoch).
        self.fixed_epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain-int indices (the sampler passes it along with each index otherwise)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        raise NotImplementedError

    def subject_of(self, index: int) -> int:
        """The reader position of the subject sample ``index`` comes from."""
        raise NotImplementedError

    def build(self, index: int, epoch: int) -> dict[str, Any]:
        """The untransformed sample ``index`` of ``epoch``."""
        raise NotImplementedError

    #: Set by the loader factories together with ``collate``: ``__getitems__`` may then return a
    #: whole batch read straight into one preallocated buffer (when there are no transforms).
    batched_reads = False
    #: ``image`` / ``label`` as MONAI ``MetaTensor`` s with the sample's affine (``ml.adapters.monai``);
    #: after the transforms, ``affine`` / ``spacing`` follow the image's (possibly updated) affine.
    meta_tensors = False

    def _key(self, key: int | tuple[int, int]) -> tuple[int, int]:
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, int(key))
        if self.fixed_epoch is not None:
            epoch = self.fixed_epoch
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        return epoch, index

    def _error(self, index: int, epoch: int, exc: Exception) -> SampleError:
        try:
            subject = self.reader.subject_ids[self.subject_of(index)]
        except Exception:
            subject = "?"
        uri = self.reader.location.uri
        text = f"subject {subject!r} (sample {index}, epoch {epoch}) of store {uri}: {type(exc).__name__}: {exc}"
        return sample_error(text, exc, subject=subject, store=uri)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, index = self._key(key)
        try:
            sample = self.build(index, epoch)
            if not self.meta_tensors:
                return self.transforms(sample) if self.transforms is not None else sample
            from radiobject.ml.adapters.monai import sync_affine, to_meta

            sample = to_meta(sample)
            return sync_affine(self.transforms(sample) if self.transforms is not None else sample)
        except Exception as exc:  # noqa: BLE001 - re-raised with the subject named
            raise self._error(index, epoch, exc) from exc

    def __getitems__(self, keys: list[Any]) -> Any:
        """A batch: collated directly when ``batched_reads`` and no transforms, else a list of samples."""
        direct = self.batched_reads and self.transforms is None and not self.meta_tensors
        try:
            if direct and hasattr(self, "build_batch"):
                return CollatedBatch(self.build_batch([self._key(k) for k in keys]))
            return [self[k] for k in keys]
        except Exception as exc:  # noqa: BLE001 - named, and sent intact from a worker process
            error = exc if isinstance(exc, SampleError) else self._error(*first_key(keys, self.epoch), exc)
            if self.batched_reads and get_worker_info() is not None:  # our collate passes it on
                return WorkerFailure(error)
            raise error from exc

    def _sample(
        self, index: int, subj: int, image: np.ndarray, label: np.ndarray | None, origin: Sequence[int] | np.ndarray
    ) -> dict[str, Any]:
        affine = self.reader.affine(subj).copy()
        affine[:3, 3] += affine[:3, :3] @ np.asarray(origin, dtype=np.float64)
        out: dict[str, Any] = {"image": torch.from_numpy(image)}
        if label is not None:
            out["label"] = torch.from_numpy(label)
        out["subject_id"] = self.reader.subject_ids[subj]
        out["index"] = index
        out["affine"] = torch.from_numpy(affine)
        out["spacing"] = torch.from_numpy(self.reader.spacing(subj))
        out["patch_origin"] = torch.as_tensor(np.asarray(origin, dtype=np.int64))
        return out


class VolumeDataset(RadiDataset):
    """One sample per subject: the whole volume (``LoadingMode.FULL_VOLUME``)."""

    def __len__(self) -> int:
        return len(self.reader)

    def subject_of(self, index: int) -> int:
        return index

    def build(self, index: int, epoch: int) -> dict[str, Any]:
        r = self.reader
        image = np.ascontiguousarray(r.read_image(index))
        label = np.ascontiguousarray(r.read_label(index)) if r.label else None
        return self._sample(index, index, image, label, (0, 0, 0))


class PatchDataset(RadiDataset):
    """``patches_per_volume`` random patches per subject per epoch (``LoadingMode.PATCH``).

    Sample ``k`` is patch ``k % patches_per_volume`` of subject ``k // patches_per_volume``; the
    samplers of ``ml.distributed`` keep a subject's patches consecutive, so with
    ``patches_per_volume > 1`` one volume load serves them all (like TorchIO's ``Queue``): when the
    reader has no cache, a small per-process buffer of ``volume_buffer_bytes`` keeps recent volumes.

    Args:
        patch_size: patch shape (3 ints); patches larger than the volume are zero-padded.
        sampler: ``"uniform"``, ``"foreground"`` (centred on a label voxel with probability
            ``foreground_prob``) or a ``{label value: weight}`` mapping (class ratios; key 0 =
            uniform). Label-driven modes use foreground indices stored beside each label volume.
    """

    def __init__(
        self,
        reader: VolumeReader,
        patch_size: Sequence[int],
        *,
        patches_per_volume: int = 1,
        sampler: str | Mapping[int, float] = "uniform",
        foreground_prob: float = 0.5,
        transforms: Transform | None = None,
        seed: int = 0,
        volume_buffer_bytes: int = 512 << 20,
    ) -> None:
        if patches_per_volume < 1:
            raise ValueError(f"patches_per_volume must be >= 1, got {patches_per_volume}")
        if sampler != "uniform" and reader.label is None:
            raise ValueError(f"sampler {sampler!r} needs a label collection")
        if patches_per_volume > 1 and isinstance(reader.cache, NoCache) and volume_buffer_bytes > 0:
            reader = reader.with_cache(InMemoryCache(volume_buffer_bytes))
        super().__init__(reader, transforms=transforms, seed=seed)
        self.patch_size = tuple(int(p) for p in patch_size)
        if len(self.patch_size) != 3:
            raise ValueError(f"patch_size must be 3 ints, got {patch_size!r}")
        self.patches_per_volume = int(patches_per_volume)
        self.sampler = sampler
        self.foreground_prob = float(foreground_prob)

    def __len__(self) -> int:
        return len(self.reader) * self.patches_per_volume

    def subject_of(self, index: int) -> int:
        return index // self.patches_per_volume

    def origin(self, index: int, epoch: int) -> np.ndarray:
        """The patch origin of sample ``index`` in ``epoch`` (pure function of seed, epoch, index)."""
        subj = self.subject_of(index)
        rng = item_rng(self.seed, epoch, index)
        shape = self.reader.shapes[subj]
        if self.sampler == "uniform":
            return uniform_patch_origins(shape, self.patch_size, 1, rng)[0]
        from radiobject.ml.foreground import foreground_index

        fg = foreground_index(self.reader, subj)
        sid = self.reader.subject_ids[subj]
        if self.sampler == "foreground":
            draw = foreground_patch_origins(
                fg, self.patch_size, 1, rng, foreground_prob=self.foreground_prob, subject=sid
            )
        elif isinstance(self.sampler, Mapping):
            draw = class_ratio_patch_origins(fg, self.patch_size, 1, rng, ratios=self.sampler, subject=sid)
        else:
            raise ValueError(f"unknown sampler {self.sampler!r}: use 'uniform', 'foreground' or a ratio mapping")
        return draw.origins[0]

    def build(self, index: int, epoch: int) -> dict[str, Any]:
        subj = self.subject_of(index)
        origin = self.origin(index, epoch)
        image, label = self.reader.read_patch(subj, origin, self.patch_size)
        return self._sample(index, subj, image, label, origin)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_facts", None)  # per-subject tables: rebuilt where needed (small pickles for workers)
        return state

    def _tables(self) -> tuple[np.ndarray, np.ndarray, list[tuple[tuple[int, int], ...]]]:
        """Per-subject affines ``(N, 4, 4)``, spacings ``(N, 3)`` and uniform origin bounds, built once.

        Each row equals ``reader.affine(i)`` / ``reader.spacing(i)`` exactly; the bounds are the
        ``[low, high)`` ranges of ``ml.sampling.uniform_patch_origins`` per axis. Rebuilt when the
        reader or the patch size changes.
        """
        r, patch = self.reader, self.patch_size
        facts = self.__dict__.get("_facts")
        if facts is None or facts[0] is not r or facts[1] != patch:
            n = len(r)
            affines = np.asarray(r.affines, dtype=np.float64).reshape(n, 4, 4)
            spacing = np.sqrt((affines[:, :3, :3] ** 2).sum(axis=1))
            bounds = [
                tuple((min(d - p, 0), max(d - p, 0) + 1) for d, p in zip(shape, patch, strict=True))
                for shape in r.shapes
            ]
            facts = self.__dict__["_facts"] = (r, patch, affines, spacing, bounds)
        return facts[2], facts[3], facts[4]

    def build_batch(self, keys: list[tuple[int, int]]) -> dict[str, Any]:
        """The collated batch of ``(epoch, index)`` keys, each patch read once into one buffer.

        The hot path of the loader: per-subject facts come from :meth:`_tables`, uniform origins
        are drawn per axis from the item's generator (the same draws as
        ``ml.sampling.uniform_patch_origins``), and every tensor wraps its numpy buffer (no copies).
        """
        r = self.reader
        n, ppv = len(keys), self.patches_per_volume
        subjects = [i // ppv for _, i in keys]
        channels = {r.num_channels(s) for s in set(subjects)}
        if len(channels) != 1:  # mixed channel counts cannot share a buffer: per-sample path
            return collate([self[k] for k in keys])
        affines_of, spacing_of, bounds_of = self._tables()
        image_t, image = batch_buffer((n, channels.pop(), *self.patch_size), np.float32)
        label_t, label = (
            batch_buffer((n, 1, *self.patch_size), r.label_dtype(sorted(set(subjects)))) if r.label else (None, None)
        )
        origins = np.empty((n, 3), np.int64)
        affines = affines_of[subjects]  # a copy: the rows are shifted below
        uniform = self.sampler == "uniform"
        seed, patch = self.seed, self.patch_size
        todo = []
        for k, ((epoch, index), subj) in enumerate(zip(keys, subjects, strict=True)):  # draws first, then reads
            try:
                if uniform:
                    rng = item_rng(seed, epoch, index)
                    origin = tuple(int(rng.integers(lo, hi)) for lo, hi in bounds_of[subj])
                else:
                    origin = tuple(int(o) for o in self.origin(index, epoch))
            except Exception as exc:  # noqa: BLE001 - re-raised with the subject named
                raise self._error(index, epoch, exc) from exc
            origins[k] = origin
            todo.append((k, epoch, index, subj, origin))
        for k, epoch, index, subj, origin in todo:
            try:
                r.read_patch_into(subj, origin, patch, image[k], label[k] if label is not None else None)
            except Exception as exc:  # noqa: BLE001 - re-raised with the subject named
                raise self._error(index, epoch, exc) from exc
        shift = origins.astype(np.float64)
        for k in range(n):
            affines[k, :3, 3] += affines[k, :3, :3] @ shift[k]
        out: dict[str, Any] = {"image": image_t}
        if label_t is not None:
            out["label"] = label_t
        out["subject_id"] = [r.subject_ids[s] for s in subjects]
        out["index"] = torch.from_numpy(np.array([i for _, i in keys], dtype=np.int64))
        out["affine"] = torch.from_numpy(affines)
        out["spacing"] = torch.from_numpy(spacing_of[subjects])
        out["patch_origin"] = torch.from_numpy(origins)
        return out


class SliceDataset(RadiDataset):
    """Every 2D slice along ``plane`` of every subject (``LoadingMode.SLICE_2D``).

    ``plane``: ``"axial"``, ``"coronal"``, ``"sagittal"`` (resolved per subject from its affine) or
    an array axis (0, 1, 2). Images are ``(C, a, b)``: the two remaining array axes, in array order;
    ``slice_axis`` (the normal axis) gives MONAI the 3x3 affine of ``SqueezeDimd`` (``ml.adapters.monai``).
    """

    def __init__(
        self, reader: VolumeReader, plane: str | int = "axial", *, transforms: Transform | None = None, seed: int = 0
    ) -> None:
        super().__init__(reader, transforms=transforms, seed=seed)
        self.plane = plane
        counts = [reader.shapes[i][reader.slice_region(i, plane, 0)[1]] for i in range(len(reader))]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def subject_of(self, index: int) -> int:
        return int(np.searchsorted(self._starts, index, side="right") - 1)

    def build(self, index: int, epoch: int) -> dict[str, Any]:
        subj = self.subject_of(index)
        position = index - int(self._starts[subj])
        region, axis = self.reader.slice_region(subj, self.plane, position)
        image = np.ascontiguousarray(np.squeeze(self.reader.read_image(subj, region), axis=1 + axis))
        label = None
        if self.reader.label:
            label = np.ascontiguousarray(np.squeeze(self.reader.read_label(subj, region), axis=1 + axis))
        return {**self._sample(index, subj, image, label, [r.start for r in region]), "slice_axis": axis}


class GridPatchDataset(RadiDataset):
    """A regular grid of patches over every subject, for sliding-window inference.

    Origins come from ``ml.sampling.grid_patch_origins`` (``overlap`` as in MONAI's
    ``sliding_window_inference``); patches larger than a volume are zero-padded at the end.
    Pair with ``ml.aggregate.GridAggregator`` to write predictions back into the store.
    """

    def __init__(
        self,
        reader: VolumeReader,
        patch_size: Sequence[int],
        *,
        overlap: float = 0.0,
        transforms: Transform | None = None,
        with_label: bool = False,
    ) -> None:
        super().__init__(reader, transforms=transforms)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.overlap = overlap
        self.with_label = with_label
        self.origins = [grid_patch_origins(s, self.patch_size, overlap) for s in reader.shapes]
        self._starts = np.concatenate([[0], np.cumsum([len(o) for o in self.origins])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def subject_of(self, index: int) -> int:
        return int(np.searchsorted(self._starts, index, side="right") - 1)

    def patches_of(self, subject: int) -> range:
        """The sample indices of one subject's grid."""
        return range(int(self._starts[subject]), int(self._starts[subject + 1]))

    def build(self, index: int, epoch: int) -> dict[str, Any]:
        subj = self.subject_of(index)
        origin = self.origins[subj][index - int(self._starts[subj])]
        image, label = self.reader.read_patch(subj, origin, self.patch_size, with_label=self.with_label)
        return self._sample(index, subj, image, label, origin)
