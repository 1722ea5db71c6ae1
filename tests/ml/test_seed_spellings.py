"""The seed's import spellings (`from ml import ...`, `from ml.X import ...`) are the same objects
as `radiobject.ml`'s."""

from __future__ import annotations

import importlib
import pickle


def test_ml_alias_is_radiobject_ml() -> None:
    import ml
    import radiobject.ml

    assert ml is radiobject.ml
    from ml import CacheStrategy, create_training_dataloader, create_validation_dataloader  # noqa: F401 - the import itself is the test
    from ml.distributed import create_distributed_dataloader, set_epoch
    from radiobject.ml import CacheStrategy as RealStrategy
    from radiobject.ml.distributed import create_distributed_dataloader as real_ddp
    from radiobject.ml.distributed import set_epoch as real_set_epoch

    assert CacheStrategy is RealStrategy
    assert create_distributed_dataloader is real_ddp and set_epoch is real_set_epoch


def test_alias_submodules_are_the_real_modules() -> None:
    for name in ("cache", "cache.disk", "distributed", "loaders", "partition", "sampling", "reader"):
        alias = importlib.import_module(f"ml.{name}")
        real = importlib.import_module(f"radiobject.ml.{name}")
        assert alias is real, name
        assert real.__spec__ is not None and real.__spec__.name == f"radiobject.ml.{name}"
    from ml.cache import CacheStrategy

    assert pickle.loads(pickle.dumps(CacheStrategy.IN_MEMORY)) is CacheStrategy.IN_MEMORY


def test_unknown_alias_submodule_raises() -> None:
    import pytest

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("ml.no_such_module")
