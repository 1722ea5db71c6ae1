"""Patch sampling as pure functions: where patches come from, never how they are read.

Every draw is a function of ``(seed, epoch, rank, worker, index)`` through :func:`item_rng`, so a
Dataset can call these per item with no global state, each epoch gives new patches, and a rerun
gives the same ones. Pass the *global* sample index and leave ``rank`` / ``worker`` at 0 to make
the draw independent of the world size and of ``num_workers`` (then an elastic resume reproduces
exactly the patches the original run would have drawn).

Conventions (all shapes and origins in array-axis order, any number of dimensions):

* a patch is ``origin + [0, patch_size)`` per axis; origins are unaligned (any voxel);
* where ``patch_size > shape`` on an axis the origin lies in ``[shape - patch, 0]`` (<= 0): the
  reader pads the part outside the volume; :func:`patch_slices` gives the clipped source and
  destination slices for that;
* label-driven sampling uses a :class:`ForegroundIndex` computed once per label volume (at ingest
  or on first use, stored beside the label), never by scanning every mask when training starts.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "EmptyLabelWarning",
    "ForegroundIndex",
    "PatchDraw",
    "class_ratio_patch_origins",
    "foreground_patch_origins",
    "grid_patch_origins",
    "item_rng",
    "patch_slices",
    "uniform_patch_origins",
]

#: Default cap of stored voxels per class; nnU-Net keeps 10,000 sampled locations per class too.
DEFAULT_MAX_PER_CLASS = 10_000
_UNIFORM = -1  # target value in PatchDraw.targets for a uniform (not label-driven) patch


class EmptyLabelWarning(UserWarning):
    """A label volume has no voxel of the requested classes; patches fall back to uniform."""


class PatchDraw(NamedTuple):
    """Patch origins and, per patch, the label value it was centred on (-1: uniform draw)."""

    origins: np.ndarray  #: (n, ndim) int64
    targets: np.ndarray  #: (n,) int64


def item_rng(
    seed: int, epoch: int, index: int, *, rank: int = 0, worker: int = 0, stream: int = 0
) -> np.random.Generator:
    """The generator of one item: ``SeedSequence(seed, spawn_key=(epoch, rank, worker, index, stream))``.

    Args:
        seed: the run's base seed (non-negative int).
        epoch: the epoch; each epoch gives an independent stream.
        index: the item index; pass the global sample index for topology-independent draws.
        rank: the distributed rank (leave 0 for draws that do not depend on the world size).
        worker: the DataLoader worker id (leave 0 for draws that do not depend on ``num_workers``).
        stream: separates uses of one item (e.g. 0 = patch origins, 1 = augmentation).
    """
    for name, value in (
        ("seed", seed),
        ("epoch", epoch),
        ("index", index),
        ("rank", rank),
        ("worker", worker),
        ("stream", stream),
    ):
        if int(value) < 0:
            raise ValueError(f"item_rng: {name} must be >= 0, got {value}")
    key = (int(epoch), int(rank), int(worker), int(index), int(stream))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


def _as_shape(value: int | Sequence[int] | np.ndarray, ndim: int, what: str) -> np.ndarray:
    arr = np.full(ndim, value, dtype=np.int64) if np.isscalar(value) else np.asarray(value, np.int64)
    if arr.shape != (ndim,) or (arr < 1).any():
        raise ValueError(f"{what} must be {ndim} positive ints, got {value!r}")
    return arr


def _origin_bounds(shape: np.ndarray, patch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive origin range per axis: [0, shape-patch], or [shape-patch, 0] if the patch is larger."""
    diff = shape - patch
    return np.minimum(diff, 0), np.maximum(diff, 0)


def uniform_patch_origins(
    shape: Sequence[int], patch_size: int | Sequence[int] | np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` patch origins drawn uniformly over every position where the patch fits.

    Returns an ``(n, ndim)`` int64 array. Along an axis where the patch is larger than the
    volume the origin is drawn from ``[shape - patch, 0]`` (the reader pads).
    """
    shp = np.asarray(shape, dtype=np.int64)
    patch = _as_shape(patch_size, shp.size, "patch_size")
    lo, hi = _origin_bounds(shp, patch)
    return rng.integers(lo, hi + 1, size=(int(n), shp.size), dtype=np.int64)


def _centres_to_origins(centres: np.ndarray, shape: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """Origins of patches centred on ``centres``, shifted to stay inside the volume.

    A patch centred on voxel c still contains c after the shift (the shift only moves it away
    from the border it crossed), so a foreground-centred patch always contains its foreground.
    """
    lo, hi = _origin_bounds(shape, patch)
    return np.clip(centres - patch // 2, lo, hi)


@dataclass(frozen=True, eq=False)
class ForegroundIndex:
    """Where each label class lies in one label volume, compact enough to store beside it.

    Representation: per label value (background excluded), the exact voxel count and the sorted
    C-order flat indices of at most ``max_per_class`` of its voxels, drawn uniformly without
    replacement (all of them when the class is smaller). This is the nnU-Net choice (10,000
    locations per class): exact voxel positions, so a centred patch provably contains a voxel of
    the class, at <= 40 KB per class whatever the volume size (BraTS 240x240x155 with ~1% tumour
    would need ~360 KB per class for every index; a coarse block-count grid is smaller still but
    only locates a class to within a block). Counts stay exact, so class frequencies and
    emptiness are known without the label. Serialise with :meth:`to_arrays` (plain arrays, no
    pickle).
    """

    shape: tuple[int, ...]
    labels: tuple[int, ...]  #: label values present, ascending, background excluded
    counts: tuple[int, ...]  #: exact voxel count of each label value
    indices: tuple[np.ndarray, ...]  #: per label: sorted flat indices (uint32, or uint64 if needed)

    @classmethod
    def from_label(
        cls,
        label: np.ndarray,
        *,
        background: int = 0,
        max_per_class: int = DEFAULT_MAX_PER_CLASS,
        seed: int = 0,
    ) -> ForegroundIndex:
        """Index a label volume (integer or bool array). Deterministic for a given ``seed``."""
        label = np.asarray(label)
        if label.dtype.kind not in "biu":
            raise TypeError(f"ForegroundIndex: label must be an integer or bool array, got {label.dtype}")
        if max_per_class < 1:
            raise ValueError(f"ForegroundIndex: max_per_class must be >= 1, got {max_per_class}")
        flat = label.reshape(-1)
        fg = np.flatnonzero(flat != background)
        values = flat[fg]
        order = np.argsort(values, kind="stable")  # group by value; indices stay ascending within
        fg, values = fg[order], values[order]
        labels, starts, counts = np.unique(values, return_index=True, return_counts=True)
        idx_dtype = np.uint32 if flat.size <= np.iinfo(np.uint32).max else np.uint64
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0x46474958,)))
        kept: list[np.ndarray] = []
        for start, count in zip(starts, counts, strict=True):
            group = fg[start : start + count]
            if count > max_per_class:
                group = np.sort(rng.choice(group, size=max_per_class, replace=False))
            kept.append(group.astype(idx_dtype))
        return cls(
            shape=tuple(int(s) for s in label.shape),
            labels=tuple(int(v) for v in labels),
            counts=tuple(int(c) for c in counts),
            indices=tuple(kept),
        )

    @property
    def is_empty(self) -> bool:
        """True when the label has no voxel other than background."""
        return not self.labels

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored indices."""
        return int(sum(a.nbytes for a in self.indices))

    def count(self, label: int) -> int:
        """Exact number of voxels of ``label`` (0 when absent)."""
        return self.counts[self.labels.index(label)] if label in self.labels else 0

    def coordinates(self, label: int) -> np.ndarray:
        """The stored voxel coordinates of ``label`` as an ``(k, ndim)`` int64 array."""
        if label not in self.labels:
            return np.empty((0, len(self.shape)), dtype=np.int64)
        flat = self.indices[self.labels.index(label)].astype(np.int64)
        return np.stack(np.unravel_index(flat, self.shape), axis=1).astype(np.int64)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for storage (e.g. a zarr group or ``np.savez``): no pickle needed."""
        lengths = np.array([a.size for a in self.indices], dtype=np.int64)
        dtype = self.indices[0].dtype if self.indices else np.uint32
        flat = np.concatenate(self.indices) if self.indices else np.empty(0, dtype)
        return {
            "shape": np.asarray(self.shape, dtype=np.int64),
            "labels": np.asarray(self.labels, dtype=np.int64),
            "counts": np.asarray(self.counts, dtype=np.int64),
            "lengths": lengths,
            "indices": flat,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ForegroundIndex:
        """Inverse of :meth:`to_arrays`."""
        lengths = np.asarray(arrays["lengths"], dtype=np.int64)
        flat = np.asarray(arrays["indices"])
        if int(lengths.sum()) != flat.size:
            raise ValueError("ForegroundIndex.from_arrays: lengths do not add up to the indices")
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return cls(
            shape=tuple(int(s) for s in arrays["shape"]),
            labels=tuple(int(v) for v in arrays["labels"]),
            counts=tuple(int(c) for c in arrays["counts"]),
            indices=tuple(flat[a:b] for a, b in itertools.pairwise(bounds)),
        )


def _empty_warning(subject: str | None, what: str) -> None:
    name = repr(subject) if subject is not None else "(unnamed)"
    warnings.warn(
        f"subject {name}: label has no voxels of {what}; sampling uniform patches instead",
        EmptyLabelWarning,
        stacklevel=3,
    )


def _draw_from_classes(
    index: ForegroundIndex,
    classes: np.ndarray,
    patch: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """One centred origin per entry of ``classes`` (label values present in ``index``)."""
    shape = np.asarray(index.shape, dtype=np.int64)
    origins = np.empty((classes.size, shape.size), dtype=np.int64)
    for label in np.unique(classes):
        where = np.flatnonzero(classes == label)
        pool = index.indices[index.labels.index(int(label))]
        flat = pool[rng.integers(0, pool.size, size=where.size)].astype(np.int64)
        centres = np.stack(np.unravel_index(flat, index.shape), axis=1)
        origins[where] = _centres_to_origins(centres, shape, patch)
    return origins


def foreground_patch_origins(
    index: ForegroundIndex,
    patch_size: int | Sequence[int],
    n: int,
    rng: np.random.Generator,
    *,
    foreground_prob: float = 1.0,
    subject: str | None = None,
) -> PatchDraw:
    """Patches centred on foreground with probability ``foreground_prob``, else uniform.

    The foreground voxel is drawn uniformly over all foreground voxels (classes weighted by their
    exact voxel counts), like TorchIO's ``LabelSampler`` or nnU-Net's oversampling with
    ``foreground_prob`` = its ``oversample_foreground_percent``. An empty label gives uniform
    patches and an :class:`EmptyLabelWarning` naming ``subject``.
    """
    if not 0.0 <= foreground_prob <= 1.0:
        raise ValueError(f"foreground_prob must be in [0, 1], got {foreground_prob}")
    shape = np.asarray(index.shape, dtype=np.int64)
    patch = _as_shape(patch_size, shape.size, "patch_size")
    targets = np.full(int(n), _UNIFORM, dtype=np.int64)
    if index.is_empty:
        if foreground_prob > 0:
            _empty_warning(subject, "foreground")
    else:
        use_fg = rng.random(int(n)) < foreground_prob
        weights = np.asarray(index.counts, dtype=np.float64)
        drawn = rng.choice(np.asarray(index.labels, np.int64), size=int(use_fg.sum()), p=weights / weights.sum())
        targets[use_fg] = drawn
    return _finish(index, targets, patch, rng)


def _finish(index: ForegroundIndex, targets: np.ndarray, patch: np.ndarray, rng: np.random.Generator) -> PatchDraw:
    origins = np.empty((targets.size, len(index.shape)), dtype=np.int64)
    uniform = targets == _UNIFORM
    origins[uniform] = uniform_patch_origins(index.shape, patch, int(uniform.sum()), rng)
    if (~uniform).any():
        origins[~uniform] = _draw_from_classes(index, targets[~uniform], patch, rng)
    return PatchDraw(origins, targets)


def class_ratio_patch_origins(
    index: ForegroundIndex,
    patch_size: int | Sequence[int],
    n: int,
    rng: np.random.Generator,
    *,
    ratios: Mapping[int, float],
    background: int = 0,
    subject: str | None = None,
) -> PatchDraw:
    """Patches centred on each class with the given relative frequency (MONAI ``RandCropByLabelClasses``).

    ``ratios`` maps label values to non-negative weights; the ``background`` key means a uniform
    patch (background covers most of a volume, so its voxels are not indexed). Classes absent from
    this volume are dropped and the rest renormalised, with an :class:`EmptyLabelWarning` naming
    ``subject``; if nothing is left every patch is uniform.
    """
    if not ratios or any(w < 0 or not math.isfinite(w) for w in ratios.values()):
        raise ValueError(f"ratios must be non-empty, finite and >= 0, got {dict(ratios)!r}")
    shape = np.asarray(index.shape, dtype=np.int64)
    patch = _as_shape(patch_size, shape.size, "patch_size")
    absent = [k for k, w in ratios.items() if k != background and w > 0 and k not in index.labels]
    if absent:
        _empty_warning(subject, f"class(es) {sorted(absent)}")
    keys = [k for k, w in ratios.items() if w > 0 and (k == background or k in index.labels)]
    targets = np.full(int(n), _UNIFORM, dtype=np.int64)
    if keys:
        weights = np.asarray([ratios[k] for k in keys], dtype=np.float64)
        codes = np.asarray([_UNIFORM if k == background else k for k in keys], dtype=np.int64)
        targets = rng.choice(codes, size=int(n), p=weights / weights.sum())
    return _finish(index, targets, patch, rng)


def grid_patch_origins(
    shape: Sequence[int], patch_size: int | Sequence[int], overlap: float | Sequence[float] = 0.0
) -> np.ndarray:
    """Origins of a regular grid of patches covering the volume, for inference.

    ``overlap`` is the fraction of the patch shared by neighbours (MONAI ``sliding_window``
    convention): step = ``max(1, floor(patch * (1 - overlap)))``. The last patch on each axis is
    moved back to end at the border, so every voxel is covered and no origin lies outside; where
    the patch is larger than the volume the single origin is 0 (the reader pads at the end).
    Returns an ``(n, ndim)`` int64 array in C order (last axis fastest).
    """
    shp = np.asarray(shape, dtype=np.int64)
    patch = _as_shape(patch_size, shp.size, "patch_size")
    ov = np.full(shp.size, overlap, dtype=np.float64) if np.isscalar(overlap) else np.asarray(overlap, np.float64)
    if ov.shape != (shp.size,) or (ov < 0).any() or (ov >= 1).any():
        raise ValueError(f"overlap must be {shp.size} fractions in [0, 1), got {overlap!r}")
    axes = []
    for size, p, o in zip(shp, patch, ov, strict=True):
        if p >= size:
            axes.append(np.zeros(1, dtype=np.int64))
            continue
        step = max(1, math.floor(p * (1.0 - o)))
        starts = np.arange(0, size - p + 1, step, dtype=np.int64)
        if starts[-1] != size - p:
            starts = np.append(starts, size - p)
        axes.append(starts)
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def patch_slices(
    origin: Sequence[int] | np.ndarray, patch_size: int | Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Source slices into the volume and destination slices into the patch buffer.

    The part of the patch outside the volume is left to the caller (fill the buffer first):
    ``buf[dst] = volume[src]``. Both tuples are empty-safe (zero-length slices when the patch
    misses the volume entirely on an axis).
    """
    shp = np.asarray(shape, dtype=np.int64)
    patch = _as_shape(patch_size, shp.size, "patch_size")
    org = np.asarray(origin, dtype=np.int64)
    lo = np.clip(org, 0, shp)
    hi = np.clip(org + patch, 0, shp)
    hi = np.maximum(hi, lo)
    src = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    dst = tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(lo, hi, org, strict=True))
    return src, dst
