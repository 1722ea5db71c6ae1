"""``RadiSampler`` (a ``DistributedSampler``) and ``create_distributed_dataloader`` / ``set_epoch``.

The sampler keeps ``DistributedSampler``'s interface (``num_replicas``, ``rank``, ``epoch``,
``set_epoch``, ``shuffle``, ``seed``, ``drop_last``) so that existing DDP code and Lightning
recognise it, and computes its shard with ``ml.partition``:

* the epoch's global order permutes *groups* (a subject's ``patches_per_volume`` consecutive
  samples; groups of one otherwise) and depends only on ``(seed, epoch)``;
* rank ``r`` takes groups ``r::world`` (``partition.rank_indices``), training padding (repeat
  from the start, at most ``world - 1`` duplicate groups) or dropping the tail, validation
  ``"exact"``: every sample exactly once, shards differing by at most one group;
* the DataLoader hands each worker whole batches in turn (``partition.worker_indices``' model), so
  sharding is by rank, then by worker, and the training loop receives exactly the rank's order;
* each index is yielded as ``(epoch, index)`` so that persistent workers draw this epoch's patches.

Resume: ``state_dict(steps, batch_size)`` records where the epoch stands; ``load_state_dict``
continues each rank exactly where it stopped with the same world size, and with another world size
re-shards exactly the samples not yet seen in that epoch (elastic).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from radiobject.ml.partition import ShardMode, epoch_order, rank_indices

__all__ = ["RadiSampler", "create_distributed_dataloader", "set_epoch"]


def _dist_default(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    ready = dist.is_available() and dist.is_initialized()
    world = num_replicas if num_replicas is not None else (dist.get_world_size() if ready else 1)
    r = rank if rank is not None else (dist.get_rank() if ready else 0)
    if not 0 <= r < world:
        raise ValueError(f"rank {r} out of range for world_size {world}")
    return int(world), int(r)


class RadiSampler(DistributedSampler):
    """Shards a dataset by rank (then, through the DataLoader, by worker); pad / drop / exact; resumable.

    Args:
        dataset: a sized dataset (``len(dataset)`` samples).
        num_replicas / rank: world size and rank (default: from ``torch.distributed``, else 1 / 0).
        shuffle: a new global order every epoch (``False``: index order, for validation).
        seed: base seed; the order is a function of ``(seed, epoch)`` only.
        drop_last: ``DistributedSampler``'s flag; ``True`` selects ``mode="drop"``.
        mode: ``"pad"`` (default for training), ``"drop"`` or ``"exact"`` (validation).
        group_size: consecutive samples kept together on one rank (``patches_per_volume``);
            ``len(dataset)`` must be a multiple of it.
    """

    def __init__(self, dataset: Any, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, *, mode: ShardMode | None = None, group_size: int = 1) -> None:
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
        if self.group_size < 1 or len(dataset) % self.group_size:
            raise ValueError(f"len(dataset)={len(dataset)} is not a multiple of group_size={group_size}")
        #: ``len()`` counts the samples consumed before a resume too (trainers such as Lightning keep
        #: counting batches across a mid-epoch restart and compare with ``len(loader)``).
        self.len_counts_consumed = False
        self._pending: dict[str, Any] | None = None  # a loaded resume point, used by the next epoch pass
        self._active: dict[str, Any] | None = None   # the definition of the epoch being iterated

    # ---------------------------------------------------------------- streams
    @property
    def num_groups(self) -> int:
        return len(self.dataset) // self.group_size

    def _expand(self, groups: np.ndarray) -> np.ndarray:
        g = self.group_size
        return (groups[:, None] * g + np.arange(g, dtype=np.int64)).reshape(-1) if g > 1 else groups

    def _stream(self, defn: dict[str, Any], rank: int) -> np.ndarray:
        """The full stream of ``rank`` under a definition (fresh epoch or elastic remainder)."""
        world = defn["world_size"]
        if defn["remaining"] is None:
            groups = epoch_order(self.num_groups, seed=self.seed, epoch=defn["epoch"], shuffle=self.shuffle)
            return self._expand(rank_indices(groups, rank=rank, world_size=world, mode=self.mode))
        rest = np.asarray(defn["remaining"], dtype=np.int64)
        return rank_indices(rest, rank=rank, world_size=world, mode=self.mode)

    def _fresh(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "world_size": self.num_replicas, "remaining": None, "start": 0, "offset": 0}

    def _definition(self) -> dict[str, Any]:
        if self._active is not None and self._active["epoch"] == self.epoch:
            return self._active
        if self._pending is not None:
            return self._pending
        return self._fresh()

    def indices(self) -> np.ndarray:
        """What this rank yields this epoch (after any resume point), as sample indices."""
        defn = self._definition()
        return self._stream(defn, self.rank)[defn["start"]:]

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        if self._pending is not None:  # the first pass after load_state_dict resumes the saved epoch
            self.epoch = self._pending["epoch"]  # (trainers may call set_epoch with their own count first)
            defn, self._pending = self._pending, None
        else:
            defn = self._definition()
        self._active = defn
        epoch = defn["epoch"]
        for i in self._stream(defn, self.rank)[defn["start"]:].tolist():
            yield (epoch, i)

    def __len__(self) -> int:
        if self.len_counts_consumed:
            defn = self._definition()
            return int(self._stream(defn, self.rank).size) + int(defn.get("offset", 0))
        return int(self.indices().size)

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch (a new order each epoch). Call before iterating, as with DistributedSampler."""
        self.epoch = int(epoch)

    # ----------------------------------------------------------------- resume
    def state_dict(self, steps: int = 0, batch_size: int = 1, *, absolute: bool = False) -> dict[str, Any]:
        """Where this epoch stands after ``steps`` batches of ``batch_size`` per rank (lockstep).

        ``steps`` counts batches since this pass started (after any resume point), or since the
        epoch began when ``absolute`` (Lightning's batch progress).

        Holds the epoch, the seed and the stream definition (an elastic remainder is stored as its
        sample list); every rank of a lockstep run produces the same dict.
        """
        defn = self._definition()
        return {
            "epoch": defn["epoch"], "seed": self.seed, "shuffle": self.shuffle, "mode": self.mode,
            "num_samples": len(self.dataset), "group_size": self.group_size, "world_size": defn["world_size"],
            "remaining": None if defn["remaining"] is None else [int(v) for v in defn["remaining"]],
            "offset": int(defn.get("offset", 0)),
            "consumed": (int(steps) * int(batch_size) - int(defn.get("offset", 0)) if absolute
                         else int(defn["start"]) + int(steps) * int(batch_size)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next pass (of epoch ``state["epoch"]``) yields only what was not yet consumed.

        Same world size: each rank continues exactly where it stopped. Another world size: the
        samples no rank had consumed are re-sharded over the new ranks (training pads / drops as
        configured, validation exact), each exactly once.
        """
        if state["num_samples"] != len(self.dataset):
            raise ValueError(f"state is for {state['num_samples']} samples, this dataset has {len(self.dataset)}")
        self.seed, self.shuffle = int(state["seed"]), bool(state["shuffle"])
        self.epoch = int(state["epoch"])
        old = {"epoch": self.epoch, "world_size": int(state["world_size"]), "remaining": state["remaining"], "start": 0,
               "offset": 0}
        consumed = int(state["consumed"])
        if old["world_size"] == self.num_replicas and state["mode"] == self.mode and state["group_size"] == self.group_size:
            self._pending = {**old, "start": consumed, "offset": int(state.get("offset", 0))}
        else:
            self._pending = {"epoch": self.epoch, "world_size": self.num_replicas,
                             "remaining": self._remaining(old, consumed, state["mode"]), "start": 0,
                             "offset": consumed + int(state.get("offset", 0))}
        self._active = None

    def _remaining(self, old: dict[str, Any], consumed: int, old_mode: ShardMode) -> list[int]:
        """Samples of the old definition that no rank consumed, in step order, without duplicates."""
        mode, self.mode = self.mode, old_mode
        try:
            streams = [self._stream(old, r) for r in range(old["world_size"])]
        finally:
            self.mode = mode
        seen: set[int] = set()
        for s in streams:
            seen.update(s[:consumed].tolist())
        out: list[int] = []
        length = max((len(s) for s in streams), default=0)
        for p in range(consumed, length):
            for s in streams:
                if p < len(s):
                    v = int(s[p])
                    if v not in seen:
                        seen.add(v)
                        out.append(v)
        return out  # (a "drop" tail was never scheduled, so it stays dropped)


def set_epoch(loader: Any, epoch: int) -> None:
    """Sets the epoch on a loader's sampler (and dataset): call at the start of every epoch."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is not None and hasattr(getattr(batch_sampler, "sampler", None), "set_epoch"):
        batch_sampler.sampler.set_epoch(epoch)
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def create_distributed_dataloader(radi: Any, *, rank: int | None = None, world_size: int | None = None,
                                  stage: str = "train", **kwargs: Any) -> Any:
    """A loader whose sampler is a ``RadiSampler`` for ``rank`` of ``world_size`` (default: torch.distributed).

    ``stage="train"``: shuffled, random patches, ``shard_mode="pad"`` (or ``"drop"``);
    ``stage="val"``: fixed order, each sample exactly once across ranks. Other keyword arguments
    are those of ``create_training_dataloader`` / ``create_validation_dataloader``.
    """
    from radiobject.ml.loaders import create_training_dataloader, create_validation_dataloader

    world, r = _dist_default(world_size, rank)
    if stage == "train":
        return create_training_dataloader(radi, rank=r, world_size=world, **kwargs)
    if stage in ("val", "validation", "test"):
        return create_validation_dataloader(radi, rank=r, world_size=world, **kwargs)
    raise ValueError(f"stage must be 'train' or 'val', got {stage!r}")
