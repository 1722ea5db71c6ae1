"""Distributed loaders: ``create_distributed_dataloader`` and ``set_epoch`` (``from ml.distributed import ...``).

The sampler, ``RadiSampler`` (a ``DistributedSampler`` over :mod:`radiobject.ml.partition`'s pure
shuffle / shard / resume functions), lives in :mod:`radiobject.ml.sampler` and is re-exported here.
"""

from __future__ import annotations

from typing import Any

from radiobject.ml.loaders import create_training_dataloader, create_validation_dataloader
from radiobject.ml.sampler import EpochNotSetWarning, RadiSampler, _dist_default, set_epoch

__all__ = ["EpochNotSetWarning", "RadiSampler", "create_distributed_dataloader", "set_epoch"]


def create_distributed_dataloader(
    radi: Any, *, rank: int | None = None, world_size: int | None = None, stage: str = "train", **kwargs: Any
) -> Any:
    """A loader whose sampler is a ``RadiSampler`` for ``rank`` of ``world_size`` (default: torch.distributed).

    ``stage="train"``: shuffled, random patches, ``shard_mode="pad"`` (or ``"drop"``);
    ``stage="val"``: fixed order, each sample exactly once across ranks. Other keyword arguments
    are those of ``create_training_dataloader`` / ``create_validation_dataloader``.
    """
    world, r = _dist_default(world_size, rank)
    if stage == "train":
        return create_training_dataloader(radi, rank=r, world_size=world, **kwargs)
    if stage in ("val", "validation", "test"):
        return create_validation_dataloader(radi, rank=r, world_size=world, **kwargs)
    raise ValueError(f"stage must be 'train' or 'val', got {stage!r}")
