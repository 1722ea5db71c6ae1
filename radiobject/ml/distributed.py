"""Distributed loaders: ``create_distributed_dataloader`` and ``set_epoch`` (``from ml.distributed import ...``).

The sampler, ``RadiSampler`` (a ``DistributedSampler`` over :mod:`radiobject.ml.partition`'s pure
shuffle / shard / resume functions), lives in :mod:`radiobject.ml.sampler` and is re-exported here;
the per-node shared-memory cache, :func:`node_shared_cache`, in :mod:`radiobject.ml.distributed_cache`.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from radiobject.ml.cache import CacheStrategy
from radiobject.ml.config import CacheConfig
from radiobject.ml.distributed_cache import node_key, node_shared_cache
from radiobject.ml.loaders import build_reader, create_training_dataloader, create_validation_dataloader
from radiobject.ml.reader import VolumeReader
from radiobject.ml.sampler import EpochNotSetWarning, RadiSampler, _dist_default, set_epoch

__all__ = [
    "EpochNotSetWarning",
    "RadiSampler",
    "create_distributed_dataloader",
    "node_key",
    "node_shared_cache",
    "set_epoch",
]

_CACHE_KEYS = ("cache", "cache_strategy", "cache_bytes", "cache_path")
_SELECTION_KEYS = ("modalities", "label", "subjects", "split", "fold", "incomplete")


def _node_cache_config(kwargs: dict[str, Any], world: int, rank: int) -> CacheConfig | None:
    """The shared-memory ``CacheConfig`` asked for, when the ranks of a live process group should share it per node."""
    if world < 2 or not (dist.is_available() and dist.is_initialized()):
        return None
    if (world, rank) != (dist.get_world_size(), dist.get_rank()):  # a simulated rank: nothing to share with
        return None
    cfg = kwargs.get("cache")
    if not isinstance(cfg, CacheConfig):
        flat = {"strategy": kwargs.get("cache_strategy"), "max_bytes": kwargs.get("cache_bytes", 2 << 30)}
        cfg = CacheConfig(**flat)
    return cfg if cfg.strategy is CacheStrategy.SHARED_MEMORY else None


def create_distributed_dataloader(
    radi: Any, *, rank: int | None = None, world_size: int | None = None, stage: str = "train", **kwargs: Any
) -> Any:
    """A loader whose sampler is a ``RadiSampler`` for ``rank`` of ``world_size`` (default: torch.distributed).

    ``stage="train"``: shuffled, random patches, ``shard_mode="pad"`` (or ``"drop"``);
    ``stage="val"``: fixed order, each sample exactly once across ranks. Other keyword arguments
    are those of ``create_training_dataloader`` / ``create_validation_dataloader``.

    ``cache_strategy="shared_memory"`` (or ``cache=CacheConfig(strategy="shared_memory")``) in an
    initialised process group of several ranks gives **one cache per node**
    (:func:`node_shared_cache`; ``cache_bytes`` is the node's budget): then this call is collective,
    every rank makes it, in the same order, as DDP code does anyway. A ``VolumeReader`` given as
    ``radi`` keeps its own cache.
    """
    world, r = _dist_default(world_size, rank)
    if stage not in ("train", "val", "validation", "test"):
        raise ValueError(f"stage must be 'train' or 'val', got {stage!r}")
    shared = None if isinstance(radi, VolumeReader) else _node_cache_config(kwargs, world, r)
    if shared is not None:
        cache = node_shared_cache(shared.max_bytes)
        picked = {k: kwargs[k] for k in _SELECTION_KEYS if k in kwargs}
        radi = build_reader(
            radi,
            picked.get("modalities"),
            picked.get("label"),
            cache=cache,
            subjects=picked.get("subjects"),
            split=picked.get("split"),
            fold=picked.get("fold"),
            incomplete=picked.get("incomplete", "error"),
        )
        kwargs = {k: v for k, v in kwargs.items() if k not in _CACHE_KEYS}
    if stage == "train":
        return create_training_dataloader(radi, rank=r, world_size=world, **kwargs)
    return create_validation_dataloader(radi, rank=r, world_size=world, **kwargs)
