"""Geometry reaches MONAI and TorchIO: our samples vs the same transforms on the source NIfTIs.

The source files are anisotropic (0.8 x 0.8 x 2.0 mm), oblique and not RAS-ordered, so any
identity-affine or voxel-unit shortcut changes the result. MONAI's side loads them with
``LoadImaged`` (nibabel reader); TorchIO's with its own ``ScalarImage`` / ``LabelMap`` readers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")
monai = pytest.importorskip("monai")

from radiobject import RadiObject  # noqa: E402 - after the importorskip guards
from radiobject.ml import create_training_dataloader, create_validation_dataloader  # noqa: E402 - after the importorskip guards

SHAPE = (20, 24, 10)


def _affine() -> np.ndarray:
    theta = np.deg2rad(12.0)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    flip = np.diag([-1.0, 1.0, 1.0])  # LAS-like: x runs right-to-left
    a = np.eye(4)
    a[:3, :3] = rot @ flip @ np.diag([0.8, 0.8, 2.0])
    a[:3, 3] = [40.0, -30.0, 12.5]
    return a


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> tuple[Path, RadiObject]:
    root = tmp_path_factory.mktemp("geom")
    rng = np.random.default_rng(0)
    for i in range(2):
        d = root / "src" / f"sub-{i:02d}"
        d.mkdir(parents=True)
        img = rng.normal(100, 20, SHAPE).astype(np.float32)
        img[5:12, 6:14, 3:7] += 200
        lab = np.zeros(SHAPE, np.uint8)
        lab[5:12, 6:14, 3:7] = 1
        nib.save(nib.Nifti1Image(img, _affine()), str(d / "t1.nii.gz"))
        nib.save(nib.Nifti1Image(lab, _affine()), str(d / "seg.nii.gz"))
    radi = RadiObject.from_niftis(
        str(root / "store"), {"T1w": str(root / "src/*/t1.nii.gz"), "seg": str(root / "src/*/seg.nii.gz")}
    )
    return root / "src", radi


def _monai_pipeline(with_random: bool = False, resize: bool = False):
    from monai import transforms as mt

    steps = [
        mt.Orientationd(keys=["image", "label"], axcodes="RAS"),
        mt.Spacingd(keys=["image", "label"], pixdim=(1.0, 1.0, 1.0), mode=("bilinear", "nearest")),
    ]
    if with_random:
        steps.append(
            mt.RandAffined(
                keys=["image", "label"],
                prob=1.0,
                rotate_range=(0, 0, 0.3),
                translate_range=(4, 4, 2),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            )
        )
    steps += [mt.SpatialPadd(keys=["image", "label"], spatial_size=(40, 40, 24))]
    if resize:
        steps += [mt.Resized(keys=["image", "label"], spatial_size=(20, 20, 12), mode=("trilinear", "nearest"))]
    return mt.Compose(steps)


@pytest.mark.parametrize("resize", [False, True])
def test_monai_spacing_orientation_match_load_imaged(sources, resize):
    from monai import transforms as mt

    src, radi = sources
    ref_t = mt.Compose(
        [
            mt.LoadImaged(keys=["image", "label"], image_only=True, ensure_channel_first=True),
            _monai_pipeline(resize=resize),
        ]
    )
    loader = create_validation_dataloader(
        radi, modalities="T1w", label="seg", transforms=_monai_pipeline(resize=resize)
    )
    batches = list(loader)
    assert len(batches) == 2
    for b in batches:
        sid = b["subject_id"][0]
        ref = ref_t({"image": str(src / sid / "t1.nii.gz"), "label": str(src / sid / "seg.nii.gz")})
        got = b["image"][0]
        assert tuple(got.shape) == tuple(ref["image"].shape)
        assert tuple(got.shape) != (1, *SHAPE)  # resampled: 0.8/2.0 mm -> 1 mm changed the grid
        np.testing.assert_allclose(got.affine.numpy(), ref["image"].affine.numpy(), atol=1e-4)
        np.testing.assert_allclose(got.numpy(), ref["image"].numpy(), rtol=1e-4, atol=1e-2)
        np.testing.assert_array_equal(b["label"][0].numpy(), ref["label"].numpy())
        # the plain affine / spacing keys follow the transformed image
        np.testing.assert_allclose(b["affine"][0].numpy(), ref["image"].affine.numpy(), atol=1e-4)
        expect = [2.0, 2.0, 2.0] if resize else [1.0, 1.0, 1.0]  # Resized 40x40x24 -> 20x20x12
        np.testing.assert_allclose(b["spacing"][0].numpy(), expect, atol=1e-4)


def test_monai_patch_metatensor_affine_is_shifted_to_the_patch_origin(sources):
    from monai.data import MetaTensor

    _, radi = sources
    loader = create_training_dataloader(
        radi, modalities="T1w", label="seg", patch_size=(8, 8, 4), batch_size=2, meta_tensors=True
    )
    b = next(iter(loader))
    assert isinstance(b["image"], MetaTensor) and isinstance(b["label"], MetaTensor)
    for k in range(2):
        expect = _affine().copy()
        expect[:3, 3] += expect[:3, :3] @ b["patch_origin"][k].numpy().astype(float)
        np.testing.assert_allclose(b["image"].affine[k].numpy(), expect, atol=1e-6)
    plain = next(iter(create_training_dataloader(radi, modalities="T1w", patch_size=(8, 8, 4))))
    assert not isinstance(plain["image"], MetaTensor)  # the switch is off without MONAI transforms


def test_monai_rand_affine_acts_in_millimetres(sources):
    """The same seeded RandAffined on our sample and on LoadImaged's gives the same voxels and affine."""
    from monai import transforms as mt

    src, radi = sources
    pipe = _monai_pipeline(with_random=True)
    pipe.set_random_state(seed=3)
    loader = create_validation_dataloader(radi, modalities="T1w", label="seg", transforms=pipe, subjects=["sub-00"])
    got = next(iter(loader))
    ref_pipe = _monai_pipeline(with_random=True)
    ref_pipe.set_random_state(seed=3)
    load = mt.LoadImaged(keys=["image", "label"], image_only=True, ensure_channel_first=True)
    ref = ref_pipe(load({"image": str(src / "sub-00/t1.nii.gz"), "label": str(src / "sub-00/seg.nii.gz")}))
    np.testing.assert_allclose(got["image"][0].numpy(), ref["image"].numpy(), rtol=1e-4, atol=1e-2)
    np.testing.assert_array_equal(got["label"][0].numpy(), ref["label"].numpy())


def test_torchio_subjects_have_the_real_affine_and_match_torchio_readers(sources):
    tio = pytest.importorskip("torchio")
    from radiobject.ml.adapters.torchio import subjects_dataset

    src, radi = sources
    ds = subjects_dataset(radi, modalities="T1w", label="seg")
    assert len(ds) == 2
    ours = ds[0]
    sid = ours["subject_id"]
    ref = tio.Subject(image=tio.ScalarImage(src / sid / "t1.nii.gz"), label=tio.LabelMap(src / sid / "seg.nii.gz"))
    np.testing.assert_allclose(ours["image"].affine, ref["image"].affine, atol=1e-6)
    np.testing.assert_allclose(ours["image"].spacing, (0.8, 0.8, 2.0), atol=1e-6)
    assert ours["image"].orientation == ref["image"].orientation
    np.testing.assert_array_equal(ours["label"].data.numpy(), ref["label"].data.numpy())
    for transform in (
        tio.Resample(1.0),
        tio.ToCanonical(),
        tio.RandomAffine(scales=0, degrees=(10, 10, 0, 0, 0, 0), translation=(3, 3, 0, 0, 0, 0)),
    ):
        torch.manual_seed(5)
        a = transform(ds[0])
        torch.manual_seed(5)
        b = transform(ref)
        np.testing.assert_allclose(a["image"].affine, b["image"].affine, atol=1e-5)
        np.testing.assert_allclose(a["image"].data.numpy(), b["image"].data.numpy(), rtol=1e-4, atol=1e-2)
        np.testing.assert_array_equal(a["label"].data.numpy(), b["label"].data.numpy())


def test_torchio_queue_with_label_sampler(sources):
    tio = pytest.importorskip("torchio")
    from radiobject.ml.adapters.torchio import subjects_dataset

    _, radi = sources
    ds = subjects_dataset(radi, modalities="T1w", label="seg", transform=tio.RandomFlip(axes=(0,)))
    queue = tio.Queue(
        ds,
        max_length=8,
        samples_per_volume=4,
        sampler=tio.LabelSampler(patch_size=(6, 6, 4)),
        num_workers=0,
        shuffle_subjects=False,
        shuffle_patches=False,
    )
    loader = torch.utils.data.DataLoader(queue, batch_size=4, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"][tio.DATA].shape == (4, 1, 6, 6, 4)
    assert (batch["label"][tio.DATA].sum(dim=(1, 2, 3, 4)) > 0).all()  # label-centred patches
    assert len(set(batch["subject_id"])) >= 1
