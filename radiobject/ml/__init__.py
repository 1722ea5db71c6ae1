"""radiobject.ml: process-safe readers, datasets, samplers and DataLoaders over a ``RadiObject``.

Public names: ``create_training_dataloader``, ``create_validation_dataloader``,
``create_inference_dataloader``, ``create_distributed_dataloader``, ``set_epoch``; the settings
``PatchConfig``, ``CacheConfig``, ``LoaderConfig``, ``DistributedConfig``; ``CacheStrategy``,
``LoadingMode``, ``VolumeReader``, the ``datasets`` module; typed errors and warnings
(``IncompleteSubjectsError``, ``SplitError``, ``BatchShapeError``, ``EpochNotSetWarning``,
``IncompleteSubjectsWarning``; and from ``ml.errors``: ``SampleError``, ``LoaderConfigError``,
``EmptySelectionError``, ``LabelValueError``, ``ResumeStateError``, ``WorkerError``,
``WorkerTimeoutError``); and ``RadiObjectDataModule`` (imported lazily: it needs
``lightning``). Adapters: ``radiobject.ml.adapters.monai`` / ``.torchio``.
"""

from __future__ import annotations

from typing import Any

from radiobject.ml import datasets
from radiobject.ml.cache import CacheStrategy
from radiobject.ml.collate import BatchShapeError
from radiobject.ml.config import CacheConfig, DistributedConfig, LoaderConfig, PatchConfig
from radiobject.ml.datasets import LoadingMode
from radiobject.ml.distributed import create_distributed_dataloader, set_epoch
from radiobject.ml.errors import (
    EmptySelectionError,
    LabelValueError,
    LoaderConfigError,
    ResumeStateError,
    SampleError,
    WorkerError,
    WorkerTimeoutError,
)
from radiobject.ml.loaders import create_inference_dataloader, create_training_dataloader, create_validation_dataloader
from radiobject.ml.reader import VolumeReader
from radiobject.ml.sampler import EpochNotSetWarning
from radiobject.ml.selection import IncompleteSubjectsError, IncompleteSubjectsWarning, SplitError

__all__ = [
    "BatchShapeError",
    "CacheConfig",
    "CacheStrategy",
    "DistributedConfig",
    "EmptySelectionError",
    "EpochNotSetWarning",
    "IncompleteSubjectsError",
    "IncompleteSubjectsWarning",
    "LabelValueError",
    "LoaderConfigError",
    "LoaderConfig",
    "LoadingMode",
    "PatchConfig",
    "RadiObjectDataModule",
    "ResumeStateError",
    "SampleError",
    "SplitError",
    "VolumeReader",
    "WorkerError",
    "WorkerTimeoutError",
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
    raise AttributeError(f"module 'radiobject.ml' has no attribute {name!r}")
