"""Roles (a label never an input unless asked), config objects and the seed spellings, splits / folds,
completeness policy, the set_epoch warning, and typed errors (or padding) for ragged batches."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from radiobject import RadiObject, WriteOptions
from radiobject.formats.image import ImageData
from radiobject.ml import (
    BatchShapeError,
    CacheConfig,
    CacheStrategy,
    DistributedConfig,
    EpochNotSetWarning,
    IncompleteSubjectsError,
    IncompleteSubjectsWarning,
    LoaderConfig,
    PatchConfig,
    SplitError,
    create_training_dataloader,
    create_validation_dataloader,
    set_epoch,
)
from tests.ml._stores import coded_volume, make_store

SHAPE = (12, 12, 8)


@pytest.fixture(scope="module")
def radi(tmp_path_factory) -> RadiObject:
    return make_store(tmp_path_factory.mktemp("roles") / "s", "zarr", n=4, shape=SHAPE)


def _ids(loader) -> list[str]:
    return [s for b in loader for s in b["subject_id"]]


# ------------------------------------------------------------------ roles
def test_default_loader_never_stacks_the_label_as_an_input_channel(radi):
    assert "seg" in radi.collection_names
    b = next(iter(create_training_dataloader(radi, patch_size=(4, 4, 4))))  # no modalities, no label
    assert b["image"].shape[1] == 2 and "label" not in b  # T1w + FLAIR; seg is not an input
    assert float(b["image"].max()) > 10  # coded intensities, not label values (0..2)
    b = next(iter(create_training_dataloader(radi, label="seg", patch_size=(4, 4, 4))))
    assert b["image"].shape[1] == 2 and b["label"].shape[1] == 1
    # the caller can still ask for it explicitly
    b = next(iter(create_training_dataloader(radi, modalities=["T1w", "seg"], patch_size=(4, 4, 4))))
    assert b["image"].shape[1] == 2


def test_the_label_also_named_as_an_input_is_a_typed_error(radi):
    from radiobject.ml import LoaderConfigError
    from radiobject.ml.adapters.torchio import subjects_dataset

    for make in (create_training_dataloader, create_validation_dataloader):
        with pytest.raises(LoaderConfigError, match="'seg' is the label and also named in modalities"):
            make(radi, modalities=["T1w", "seg"], label="seg", patch_size=(4, 4, 4))
    with pytest.raises(LoaderConfigError, match="label='seg' only"):
        subjects_dataset(radi, modalities="seg", label="seg")


def test_a_label_named_like_an_image_is_still_excluded_by_role(tmp_path):
    from radiobject.ml.selection import default_modalities, is_label_collection

    radi = make_store(tmp_path / "s", "zarr", n=2, shape=SHAPE)
    assert is_label_collection(radi, "seg") and not is_label_collection(radi, "T1w")
    assert default_modalities(radi, label="FLAIR") == ["T1w"]
    for name in ("mask", "labels", "tumor_seg", "GTV_mask", "aseg", "sub-01_dseg"):
        assert is_label_collection(radi, name), name
    for name in ("T1w", "FLAIR", "ct", "adc", "pet"):
        assert not is_label_collection(radi, name), name


# ---------------------------------------------------------- configs / seeds
def test_seed_spellings_and_config_objects_build_the_same_loader(radi):
    seed = create_training_dataloader(
        radi,
        modalities=["T1w"],
        patch_size=(4, 4, 4),
        batch_size=2,
        num_workers=0,
        cache_strategy=CacheStrategy.IN_MEMORY,
        seed=3,
    )
    cfg = create_training_dataloader(
        radi,
        modalities=["T1w"],
        patch=PatchConfig(patch_size=(4, 4, 4)),
        loader=LoaderConfig(batch_size=2),
        cache=CacheConfig(strategy="in_memory"),
        seed=3,
    )
    a = [(b["subject_id"], b["patch_origin"].tolist()) for b in seed]
    assert a == [(b["subject_id"], b["patch_origin"].tolist()) for b in cfg]
    assert seed.batch_size == cfg.batch_size == 2
    with pytest.raises(TypeError, match="batch_size"):
        create_training_dataloader(radi, modalities=["T1w"], batch_size=3, loader=LoaderConfig(batch_size=2))
    with pytest.raises(TypeError, match="bogus"):
        create_training_dataloader(radi, modalities=["T1w"], bogus=1)
    for c in (PatchConfig(), CacheConfig(), LoaderConfig(), DistributedConfig(rank=1, world_size=2)):
        assert pickle.loads(pickle.dumps(c)) == c
        with pytest.raises(AttributeError):
            c.__setattr__("x", 1)


def test_seed_import_spellings():
    import ml
    import radiobject.ml as rml
    from ml import create_training_dataloader as a
    from ml.distributed import create_distributed_dataloader
    from ml.distributed import set_epoch as se

    assert a is rml.create_training_dataloader and se is rml.set_epoch
    assert create_distributed_dataloader is rml.create_distributed_dataloader
    assert ml.LoaderConfig is rml.LoaderConfig


def test_distributed_seed_spelling(radi):
    from ml.distributed import create_distributed_dataloader

    shards = [
        create_distributed_dataloader(
            radi, rank=r, world_size=2, modalities=["T1w"], patch_size=(4, 4, 4), batch_size=1
        )
        for r in range(2)
    ]
    for s in shards:
        set_epoch(s, 1)
    ids = sorted(_ids(shards[0]) + _ids(shards[1]))
    assert ids == [f"sub-{i:02d}" for i in range(4)]


# ------------------------------------------------------------------ habits
def test_second_pass_without_set_epoch_warns(radi):
    loader = create_training_dataloader(radi, modalities=["T1w"], patch_size=(4, 4, 4))
    list(loader)
    with pytest.warns(EpochNotSetWarning, match="set_epoch"):
        list(loader)
    set_epoch(loader, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EpochNotSetWarning)
        list(loader)
        val = create_validation_dataloader(radi, modalities=["T1w"])
        list(val)
        list(val)  # validation repeats by design: no warning


def _ragged_store(root) -> RadiObject:
    aff = np.eye(4)
    imgs = {
        f"s{i}": ImageData(coded_volume(i, shape), aff, {}, f"x/s{i}")
        for i, shape in enumerate([(10, 10, 6), (12, 9, 6), (10, 10, 6)])
    }
    return RadiObject.from_images(str(root), {"T1w": imgs}, options=WriteOptions(backend="zarr"))


def test_ragged_validation_batch_typed_error_or_padding(tmp_path):
    radi = _ragged_store(tmp_path / "r")
    with pytest.raises(BatchShapeError, match=r"'s0': \(1, 10, 10, 6\).*'s1': \(1, 12, 9, 6\)"):
        list(create_validation_dataloader(radi, modalities="T1w", batch_size=3))
    b = next(iter(create_validation_dataloader(radi, modalities="T1w", batch_size=3, pad_collate=True)))
    assert tuple(b["image"].shape) == (3, 1, 12, 10, 6)
    assert b["shape"].tolist() == [[1, 10, 10, 6], [1, 12, 9, 6], [1, 10, 10, 6]]
    np.testing.assert_array_equal(b["image"][1, 0, :12, :9].numpy(), coded_volume(1, (12, 9, 6)))
    assert float(b["image"][1, 0, :, 9:].abs().sum()) == 0.0
    err = BatchShapeError("image", {"a": (1, 2)})
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


def _incomplete_store(root) -> RadiObject:
    aff = np.eye(4)
    t1 = {f"s{i}": ImageData(coded_volume(i, SHAPE), aff, {}, f"x/s{i}/t1") for i in range(4)}
    seg = {f"s{i}": ImageData(np.zeros(SHAPE, np.uint8), aff, {}, f"x/s{i}/seg") for i in (0, 2, 3)}
    meta = pd.DataFrame(
        {
            "obs_subject_id": [f"s{i}" for i in range(4)],
            "split": ["train", "train", "val", "test"],
            "fold": [0, 1, 0, 1],
            "fold_1": ["train", "val", "train", "val"],
        }
    )
    return RadiObject.from_images(
        str(root),
        {"T1w": t1, "seg": seg},
        obs_meta=meta,
        validate_alignment=False,
        options=WriteOptions(backend="zarr"),
    )


def test_completeness_policy(tmp_path):
    radi = _incomplete_store(tmp_path / "i")
    with pytest.raises(IncompleteSubjectsError, match=r"1 incomplete subject.*'s1' lacks \['seg'\]") as exc:
        create_training_dataloader(radi, modalities="T1w", label="seg", patch_size=(4, 4, 4))
    assert exc.value.missing == {"s1": ["seg"]}
    assert pickle.loads(pickle.dumps(exc.value)).missing == {"s1": ["seg"]}
    with pytest.warns(IncompleteSubjectsWarning, match="left out 1 of 4"):
        loader = create_training_dataloader(
            radi, modalities="T1w", label="seg", patch_size=(4, 4, 4), incomplete="skip"
        )
    assert sorted(_ids(loader)) == ["s0", "s2", "s3"]
    assert len(_ids(create_training_dataloader(radi, modalities="T1w", patch_size=(4, 4, 4)))) == 4


def test_split_and_fold_read_obs_meta(tmp_path):
    radi = _incomplete_store(tmp_path / "i")
    kw = dict(modalities="T1w", patch_size=(4, 4, 4))
    assert sorted(_ids(create_training_dataloader(radi, split="train", **kw))) == ["s0", "s1"]
    assert _ids(create_validation_dataloader(radi, split="val", modalities="T1w")) == ["s2"]
    assert _ids(create_validation_dataloader(radi, split="validation", modalities="T1w")) == ["s2"]
    # fold_<k> column first, then a `fold` number column
    assert sorted(_ids(create_training_dataloader(radi, split="train", fold=1, **kw))) == ["s0", "s2"]
    assert sorted(_ids(create_validation_dataloader(radi, split="val", fold=1, modalities="T1w"))) == ["s1", "s3"]
    assert sorted(_ids(create_validation_dataloader(radi, split="val", fold=0, modalities="T1w"))) == ["s0", "s2"]
    assert sorted(_ids(create_training_dataloader(radi, split="train", fold=0, **kw))) == ["s1", "s3"]
    with pytest.raises(SplitError, match="fold 5"):
        create_training_dataloader(radi, split="train", fold=5, **kw)
    plain = make_store(tmp_path / "p", "zarr", n=2, shape=SHAPE)
    with pytest.raises(SplitError, match="column 'split'"):
        create_training_dataloader(plain, split="train", **kw)


def test_unknown_subject_is_not_found(radi):
    from radiobject.errors import NotFoundError

    with pytest.raises(NotFoundError, match="sub-99"):
        create_training_dataloader(radi, modalities=["T1w"], subjects=["sub-00", "sub-99"])


def test_datamodule_takes_configs_and_splits(tmp_path):
    pytest.importorskip("lightning")
    from radiobject.ml.lightning import RadiObjectDataModule

    radi = _incomplete_store(tmp_path / "i")
    dm = RadiObjectDataModule(
        radi, modalities="T1w", split=True, patch=PatchConfig(patch_size=(4, 4, 4)), loader=LoaderConfig(batch_size=1)
    )
    assert sorted(_ids(dm.train_dataloader())) == ["s0", "s1"]
    assert _ids(dm.val_dataloader()) == ["s2"] and _ids(dm.test_dataloader()) == ["s3"]
    folds = RadiObjectDataModule(radi, modalities="T1w", fold=1, patch_size=(4, 4, 4), batch_size=1)
    assert sorted(_ids(folds.train_dataloader())) == ["s0", "s2"]
    assert sorted(_ids(folds.val_dataloader())) == ["s1", "s3"]
    with pytest.raises(TypeError, match="batch_size"):
        RadiObjectDataModule(radi, modalities="T1w", batch_size=2, loader=LoaderConfig(batch_size=1))
    plain = RadiObjectDataModule(radi, modalities="T1w", patch_size=(4, 4, 4))  # no split: no val loader
    assert plain.val_dataloader() == []


def test_config_spellings_are_forgiving_but_checked():
    from radiobject.ml import LoadingMode

    assert CacheConfig("IN_MEMORY").strategy is CacheStrategy.IN_MEMORY
    assert CacheConfig(None).strategy is CacheStrategy.NONE
    assert PatchConfig(loading_mode=LoadingMode.SLICE_2D).loading_mode == "slice_2d"
    assert PatchConfig(loading_mode="PATCH").loading_mode == "patch"
    with pytest.raises(ValueError, match="cache strategy"):
        CacheConfig("ram")
    with pytest.raises(ValueError, match="loading_mode"):
        PatchConfig(loading_mode="cube")
    with pytest.raises(ValueError, match="worker_mode"):
        LoaderConfig(worker_mode="fibers")
    with pytest.raises(ValueError, match="shard_mode"):
        DistributedConfig(shard_mode="exact")
