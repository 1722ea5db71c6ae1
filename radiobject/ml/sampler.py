"""``RadiSampler`` (a ``DistributedSampler``) and ``set_epoch``.

The sampler keeps ``DistributedSampler``'s interface (``num_replicas``, ``rank``, ``epoch``,
``set_epoch``, ``shuffle``, ``seed``, ``drop_last``) so that existing DDP code and Lightning
recognise it, and holds no sharding logic of its own: every stream, every resume point and every
state dict comes from the pure functions of :mod:`radiobject.ml.partition` (the one resume model):

* the epoch's order permutes *groups* (a subject's ``patches_per_volume`` consecutive samples) and
  depends only on ``(seed, epoch)``; rank ``r`` takes groups ``r::world`` (pad / drop / exact);
* each index is yielded as ``(epoch, index)`` so that persistent workers draw this epoch's patches;
* while sample ``j`` is handed out, the reads of samples ``j .. j + prefetch_patches`` of a patch
  dataset are already in flight (:mod:`radiobject.ml._reader_prefetch`; bounded, cancelled by each
  new pass, never changing which samples or patches are drawn);
* the state is ``partition.resume_state``'s small dict (``epoch``, ``seed``, ``world_size``,
  ``sample_in_epoch``, ``segments``); ``load_state_dict`` continues each rank exactly where it
  stopped on the same world size, and re-shards exactly the unseen samples on another (elastic).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from radiobject.ml._reader_prefetch import DEFAULT_PREFETCH_PATCHES, Lookahead
from radiobject.ml.errors import LoaderConfigError, ResumeStateError
from radiobject.ml.partition import ShardMode, resume_state, segment_streams

__all__ = ["EpochNotSetWarning", "RadiSampler", "check_state", "dataset_fingerprint", "set_epoch"]


class EpochNotSetWarning(UserWarning):
    """A shuffled loader was iterated again without ``set_epoch``: it repeats the same order and patches."""


def _dist_default(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    ready = dist.is_available() and dist.is_initialized()
    world = num_replicas if num_replicas is not None else (dist.get_world_size() if ready else 1)
    r = rank if rank is not None else (dist.get_rank() if ready else 0)
    if not 0 <= r < world:
        raise LoaderConfigError(f"rank {r} out of range for world_size {world}")
    return int(world), int(r)


class RadiSampler(DistributedSampler):
    """Shards a dataset by rank; pad / drop / exact; resumable (exact and elastic).

    Args:
        dataset: a sized dataset (``len(dataset)`` samples).
        num_replicas / rank: world size and rank (default: from ``torch.distributed``, else 1 / 0).
        shuffle: a new global order every epoch (``False``: index order, for validation).
        seed: base seed; the order is a function of ``(seed, epoch)`` only.
        drop_last: ``DistributedSampler``'s flag; ``True`` selects ``mode="drop"``.
        mode: ``"pad"`` (default for training), ``"drop"`` or ``"exact"`` (validation).
        group_size: consecutive samples kept together on one rank (``patches_per_volume``);
            ``len(dataset)`` must be a multiple of it.
        prefetch_patches: patches of a patch dataset read ahead while the current one is handed
            out (default :data:`~radiobject.ml._reader_prefetch.DEFAULT_PREFETCH_PATCHES`; the
            loader factories use 2 x ``batch_size``; 0 disables). Reads start only in a process
            that reads through the dataset's reader (not in the main process of a loader with
            worker processes); samples are the same with and without.

    Iterating a shuffled sampler twice on the same epoch without ``set_epoch`` (or
    ``load_state_dict``) in between warns with :class:`EpochNotSetWarning`.
    """

    def __init__(
        self,
        dataset: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        *,
        mode: ShardMode | None = None,
        group_size: int = 1,
        prefetch_patches: int | None = None,
    ) -> None:
        world, r = _dist_default(num_replicas, rank)
        self.dataset = dataset
        self.num_replicas = world
        self.rank = r
        self.epoch = 0
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.mode: ShardMode = mode or ("drop" if drop_last else "pad")
        if self.mode not in ("pad", "drop", "exact"):
            raise ValueError(f"mode must be 'pad', 'drop' or 'exact', got {self.mode!r}")
        self.group_size = int(group_size)
        self.prefetch_patches = DEFAULT_PREFETCH_PATCHES if prefetch_patches is None else int(prefetch_patches)
        if self.prefetch_patches < 0:
            raise ValueError(f"prefetch_patches must be >= 0, got {prefetch_patches}")
        if self.group_size < 1 or len(dataset) % self.group_size:
            raise ValueError(f"len(dataset)={len(dataset)} is not a multiple of group_size={group_size}")
        #: ``len()`` counts the samples consumed before a resume too (trainers such as Lightning keep
        #: counting batches across a mid-epoch restart and compare with ``len(loader)``).
        self.len_counts_consumed = False
        self._pending: tuple[int, list[list[int]]] | None = None  # a loaded, unfinished resume point
        self._active: tuple[int, list[list[int]]] | None = None  # the epoch being iterated: (epoch, segments)
        self._epoch_set = True  # set_epoch / load_state_dict called since the last pass began
        self._last_pass: int | None = None

    # ---------------------------------------------------------------- streams
    @property
    def _size(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]  # a sized dataset (checked in __init__)

    def _current(self) -> tuple[int, list[list[int]]]:
        """``(epoch, segments)`` of the pass now running or about to run.

        A loaded, unfinished resume point wins over ``set_epoch`` for the first pass after
        ``load_state_dict`` (trainers such as Lightning count epochs their own way on a restart).
        """
        if self._active is not None and self._active[0] == self.epoch:
            return self._active
        if self._pending is not None:
            return self._pending
        return self.epoch, [[self.num_replicas, 0]]

    def segments(self) -> list[list[int]]:
        """The ``[[world_size, position], ...]`` of the current epoch (see ``ml.partition``)."""
        return self._current()[1]

    def _streams(self, epoch: int, segments: list[list[int]]) -> list[np.ndarray]:
        return segment_streams(
            self._size,
            seed=self.seed,
            epoch=epoch,
            segments=segments,
            mode=self.mode,
            shuffle=self.shuffle,
            group_size=self.group_size,
        )

    def indices(self) -> np.ndarray:
        """What this rank yields this epoch (after any resume point), as sample indices."""
        epoch, segs = self._current()
        return self._streams(epoch, segs)[self.rank][segs[-1][1] :]

    def begin_pass(self) -> tuple[int, np.ndarray]:
        """Starts a pass: ``(epoch, the sample indices this rank yields)``, with ``__iter__``'s bookkeeping.

        Warns with :class:`EpochNotSetWarning` for a shuffled epoch iterated again without
        ``set_epoch``; a loaded resume point is used up by the pass it starts.
        """
        if (
            not self._epoch_set
            and self._last_pass == self.epoch
            and self.shuffle
            and getattr(self.dataset, "fixed_epoch", None) is None
        ):
            warnings.warn(
                f"epoch {self.epoch} iterated again without set_epoch: the same order and patches as "
                "the last pass; call radiobject.ml.set_epoch(loader, epoch) at the start of every epoch",
                EpochNotSetWarning,
                stacklevel=3,
            )
        epoch, segs = self._current()
        segs = [list(x) for x in segs]
        self.epoch = epoch
        self._epoch_set, self._last_pass = False, epoch
        self._pending = None
        self._active = (epoch, segs)
        return epoch, self._streams(epoch, segs)[self.rank][segs[-1][1] :]

    def fresh_pass(self, epoch: int) -> np.ndarray:
        """What a pass of ``epoch`` from its start yields on this rank (pure: no state changes).

        The loader's worker processes run ahead into the epoch it predicts with this
        (:mod:`radiobject.ml._epochs`).
        """
        return self._streams(int(epoch), [[self.num_replicas, 0]])[self.rank]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, indices = self.begin_pass()
        stream = indices.tolist()
        ahead = Lookahead.start(self.dataset, epoch, stream, self.prefetch_patches)
        for j, i in enumerate(stream):
            if ahead is not None and self.overlap:
                ahead.step(j)
            yield (epoch, i)

    def __len__(self) -> int:
        epoch, segs = self._current()
        stream = self._streams(epoch, segs)[self.rank]
        n = max(int(stream.size) - segs[-1][1], 0)
        if self.len_counts_consumed:
            n += sum(p for _, p in segs)
        return n

    #: Whether reads ahead pay now (set by ``RadiDataLoader`` from the time its consumer spends
    #: between batches): a consumer that asks for the next batch at once leaves nothing to overlap
    #: with, and reads ahead then only compete with the batch being read (the GIL, the cores).
    overlap: bool = True

    #: Optional: where the epoch really comes from (the Lightning DataModule passes the trainer's
    #: ``current_epoch``, since Lightning's ``set_epoch`` argument runs one ahead after some restarts).
    epoch_source: Callable[[], int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch (a new order each epoch). Call before iterating, as with DistributedSampler."""
        self.epoch = int(self.epoch_source()) if self.epoch_source is not None else int(epoch)
        self._epoch_set = True

    # ----------------------------------------------------------------- resume
    def state_dict(self, steps: int = 0, batch_size: int = 1, *, absolute: bool = False) -> dict[str, Any]:
        """``partition.resume_state`` after ``steps`` batches of ``batch_size`` per rank (lockstep).

        ``steps`` counts batches since this pass started (after any resume point), or since the
        epoch began when ``absolute`` (Lightning's batch progress). Every rank of a lockstep run
        produces the same dict.
        """
        epoch, current = self._current()
        segs = [list(x) for x in current]
        done = int(steps) * int(batch_size)
        before = sum(p for _, p in segs[:-1])
        position = done - before if absolute else segs[-1][1] + done
        length = len(self._streams(epoch, segs)[self.rank])
        segs[-1][1] = max(0, min(position, length))
        state = resume_state(
            self._size,
            seed=self.seed,
            epoch=epoch,
            segments=segs,
            mode=self.mode,
            shuffle=self.shuffle,
            group_size=self.group_size,
        )
        state["dataset"] = dataset_fingerprint(self.dataset)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next pass of epoch ``state["epoch"]`` yields only what was not yet consumed.

        Same world size: each rank continues exactly where it stopped. Another world size: the
        samples no rank had consumed are re-sharded over the new ranks (training pads / drops as
        configured, validation exact), each exactly once.
        """
        epoch, segs = check_state(
            state,
            {
                "num_samples": self._size,
                "group_size": self.group_size,
                "mode": self.mode,
                "seed": self.seed,
                "shuffle": self.shuffle,
                "dataset": dataset_fingerprint(self.dataset),
            },
        )
        self.epoch = epoch
        try:  # every position must lie on its segment's streams (a tampered state cannot skip samples)
            for k in range(len(segs)):
                longest = max(len(x) for x in self._streams(epoch, [*segs[:k], [segs[k][0], 0]]))
                if segs[k][1] > longest:
                    raise ResumeStateError(
                        f"resume state: position {segs[k][1]} of segment {k} is past the end of its streams "
                        f"({longest} samples per rank on {segs[k][0]} ranks)"
                    )
        except ResumeStateError:
            raise
        except ValueError as exc:
            raise ResumeStateError(f"resume state: segments {segs} do not describe this epoch: {exc}") from exc
        if segs[-1][0] != self.num_replicas:
            segs.append([self.num_replicas, 0])
        left = sum(max(len(x) - segs[-1][1], 0) for x in self._streams(self.epoch, segs))
        # an unfinished epoch is resumed by the next pass; a finished one leaves the next epoch fresh
        self._pending = (self.epoch, segs) if left else None
        self._active = None if left else (self.epoch, segs)
        self._epoch_set = True


def dataset_fingerprint(dataset: Any) -> str:
    """A short digest of what a dataset's samples are (subjects, collections, patch size, sampling), so
    that a resume state is never loaded into a loader whose samples are others (world size excluded)."""
    import hashlib

    reader = getattr(dataset, "reader", None)
    parts = [
        type(dataset).__name__,
        len(dataset),
        getattr(getattr(reader, "location", None), "uri", None),
        getattr(reader, "modalities", None),
        getattr(reader, "label", None),
        getattr(reader, "subject_ids", None),
        getattr(reader, "obs_ids", None),
        getattr(dataset, "patch_size", None),
        getattr(dataset, "patches_per_volume", None),
        repr(getattr(dataset, "sampler", None)),
        getattr(dataset, "foreground_prob", None),
        getattr(dataset, "plane", None),
        getattr(dataset, "seed", None),
    ]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def check_state(state: Any, mine: dict[str, Any]) -> tuple[int, list[list[int]]]:
    """``(epoch, segments)`` of a resume state, checked against this loader's facts ``mine``.

    ``ResumeStateError`` for a state that is not a mapping, lacks a key, holds values of the wrong
    type or range, or belongs to another loader (dataset, patches, shard mode, seed, shuffle).
    A state without ``"dataset"`` (saved before it was recorded) is not checked for it.
    """
    from collections.abc import Mapping

    if not isinstance(state, Mapping):
        raise ResumeStateError(f"resume state must be the dict of state_dict(), got {type(state).__name__}")
    missing = [
        k for k in ("epoch", "seed", "shuffle", "mode", "num_samples", "group_size", "segments") if k not in state
    ]
    if missing:
        raise ResumeStateError(f"resume state lacks {missing} (not a state_dict() of a radiobject loader)")
    for key, value in mine.items():
        if key == "dataset" and key not in state:
            continue
        if state.get(key) != value:
            raise ResumeStateError(
                f"resume state has {key}={state.get(key)!r}, this loader has {value!r}: the state belongs to "
                "another loader (same subjects, patch size, patches_per_volume, sampler, seed and shard mode needed)"
            )
    try:
        epoch = state["epoch"]
        if isinstance(epoch, bool) or int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch {epoch!r}")
        segs = [[w, p] for w, p in state["segments"]]
        if not segs:
            raise ValueError("no segments")
        for w, p in segs:
            if isinstance(w, bool) or isinstance(p, bool) or int(w) != w or int(p) != p or w < 1 or p < 0:
                raise ValueError(f"segment {[w, p]!r}")
    except (TypeError, ValueError) as exc:
        raise ResumeStateError(f"resume state is malformed ({exc}): {dict(state)!r}") from exc
    return int(epoch), [[int(w), int(p)] for w, p in segs]


def set_epoch(loader: Any, epoch: int) -> None:
    """Sets the epoch on a loader's sampler (and dataset): call at the start of every epoch."""
    targets = [
        getattr(loader, "sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
        getattr(loader, "dataset", None),
    ]
    done: set[int] = set()
    for target in targets:
        fn = getattr(target, "set_epoch", None)
        if fn is not None and id(target) not in done:
            done.add(id(target))
            fn(epoch)
