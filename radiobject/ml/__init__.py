"""radiobject.ml: process-safe readers, datasets, samplers and DataLoaders over a ``RadiObject``.

Public names: ``create_training_dataloader``, ``create_validation_dataloader``,
``create_inference_dataloader``, ``CacheStrategy``, ``LoadingMode``, ``VolumeReader``, the
``datasets`` module, and ``RadiObjectDataModule`` (imported lazily: it needs ``lightning``).
Distributed: ``from ml.distributed import create_distributed_dataloader, set_epoch``.
"""

from __future__ import annotations

from typing import Any

from radiobject.ml import datasets
from radiobject.ml.cache import CacheStrategy
from radiobject.ml.datasets import LoadingMode
from radiobject.ml.distributed import create_distributed_dataloader, set_epoch
from radiobject.ml.loaders import create_inference_dataloader, create_training_dataloader, create_validation_dataloader
from radiobject.ml.reader import VolumeReader

__all__ = [
    "CacheStrategy",
    "LoadingMode",
    "RadiObjectDataModule",
    "VolumeReader",
    "create_distributed_dataloader",
    "create_inference_dataloader",
    "create_training_dataloader",
    "create_validation_dataloader",
    "datasets",
    "set_epoch",
]


def __getattr__(name: str) -> Any:
    if name == "RadiObjectDataModule":
        from radiobject.ml.lightning import RadiObjectDataModule

        return RadiObjectDataModule
    raise AttributeError(f"module 'ml' has no attribute {name!r}")
