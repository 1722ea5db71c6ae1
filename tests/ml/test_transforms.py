"""MONAI dict transforms and TorchIO transforms accept our samples unchanged (directly and inside loaders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radiobject.ml import create_training_dataloader
from radiobject.ml.datasets import PatchDataset
from radiobject.ml.reader import VolumeReader
from tests.ml._stores import make_store

SHAPE = (16, 16, 12)


@pytest.fixture(scope="module")
def radi(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("tf") / "store", "zarr", n=2, shape=SHAPE)


@pytest.fixture
def sample(radi):
    reader = VolumeReader.from_radi(radi, ["T1w", "FLAIR"], "seg")
    return PatchDataset(reader, (8, 8, 8), sampler="foreground", foreground_prob=1.0)[(0, 0)]


def test_monai_dict_transforms(radi, sample):
    from monai.transforms import Compose, EnsureTyped, NormalizeIntensityd, RandFlipd, RandRotate90d, RandSpatialCropd

    tf = Compose(
        [
            RandFlipd(keys=["image", "label"], prob=1.0, spatial_axis=0),
            RandRotate90d(keys=["image", "label"], prob=1.0, spatial_axes=(0, 1)),
            RandSpatialCropd(keys=["image", "label"], roi_size=(6, 6, 6), random_size=False),
            NormalizeIntensityd(keys="image", channel_wise=True),
            EnsureTyped(keys=["image", "label"], track_meta=False),
        ]
    )
    tf.set_random_state(0)
    out = tf(dict(sample))
    assert out["image"].shape == (2, 6, 6, 6) and out["label"].shape == (1, 6, 6, 6)
    assert out["subject_id"] == sample["subject_id"] and torch.equal(out["patch_origin"], sample["patch_origin"])
    torch.testing.assert_close(out["image"].mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    # flip then check image and label moved together: flip of the raw sample matches
    flipped = RandFlipd(keys=["image", "label"], prob=1.0, spatial_axis=0)(dict(sample))
    np.testing.assert_array_equal(np.asarray(flipped["image"]), sample["image"].numpy()[:, ::-1])
    np.testing.assert_array_equal(np.asarray(flipped["label"]), sample["label"].numpy()[:, ::-1])
    loader = create_training_dataloader(
        radi, modalities=["T1w", "FLAIR"], label="seg", patch_size=(8, 8, 8), batch_size=2, transforms=tf
    )
    b = next(iter(loader))
    assert b["image"].shape == (2, 2, 6, 6, 6) and b["subject_id"]


def test_torchio_transforms(radi, sample):
    import torchio as tio

    keys = dict(include=["image", "label"], label_keys=["label"])  # TorchIO's switch for dict inputs
    tf = tio.Compose(
        [
            tio.RandomFlip(axes=(0,), flip_probability=1.0, **keys),
            tio.ZNormalization(**keys),
            tio.RandomAffine(scales=0.1, degrees=5, **keys),
        ],
        **keys,
    )
    out = tf(dict(sample))
    assert isinstance(out, dict) and out["image"].shape == (2, 8, 8, 8) and out["label"].shape == (1, 8, 8, 8)
    assert out["subject_id"] == sample["subject_id"]
    assert set(torch.unique(out["label"]).tolist()) <= {0, 1, 2}  # labels stay labels (nearest interpolation)
    flip = tio.RandomFlip(axes=(0,), flip_probability=1.0, include=["image", "label"], label_keys=["label"])
    flipped = flip(dict(sample))
    np.testing.assert_array_equal(flipped["image"].numpy(), sample["image"].numpy()[:, ::-1])
    np.testing.assert_array_equal(flipped["label"].numpy(), sample["label"].numpy()[:, ::-1])
    loader = create_training_dataloader(
        radi, modalities=["T1w", "FLAIR"], label="seg", patch_size=(8, 8, 8), batch_size=2, transforms=tf
    )
    b = next(iter(loader))
    assert b["image"].shape == (2, 2, 8, 8, 8)
