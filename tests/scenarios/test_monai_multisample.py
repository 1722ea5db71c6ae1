"""MONAI multi-sample crops (``RandCropByPosNegLabeld(num_samples=n)``) in a loader with worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.scenarios._trees import make_msd

mt = pytest.importorskip("monai.transforms")


def _pipeline() -> object:
    keys = ["image", "label"]
    return mt.Compose(
        [
            mt.Orientationd(keys=keys, axcodes="RAS", labels=None),
            mt.Spacingd(keys=keys, pixdim=(1.0, 1.0, 1.0), mode=("bilinear", "nearest")),
            mt.RandCropByPosNegLabeld(
                keys=keys, label_key="label", spatial_size=(16, 16, 16), pos=1, neg=1, num_samples=2
            ),
            mt.RandAffined(keys=keys, prob=1.0, rotate_range=(0, 0, 0.3), mode=("bilinear", "nearest")),
        ]
    )


@pytest.fixture(scope="module")
def msd_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    from radiobject.ingest.layouts import ingest_msd

    tmp = tmp_path_factory.mktemp("msd")
    ingest_msd(make_msd(Path(tmp) / "Task05_Prostate"), str(tmp / "store"))
    return str(tmp / "store")


@pytest.mark.parametrize("workers", [0, 2])
def test_num_samples_crops_make_one_flat_batch(msd_store: str, workers: int) -> None:
    """batch_size=2 subjects x 2 crops is one batch of 4 (as MONAI's list_data_collate), affine synced."""
    from radiobject import RadiObject
    from radiobject.ml import create_validation_dataloader

    radi = RadiObject(msd_store)
    loader = create_validation_dataloader(
        radi, modalities=["image"], label="label", transforms=_pipeline(), batch_size=2, num_workers=workers
    )
    batches = list(loader)
    assert [b["image"].shape[0] for b in batches] == [4, 2]
    first = batches[0]
    assert isinstance(first, dict)
    assert tuple(first["image"].shape[1:]) == (2, 16, 16, 16)  # the 4D MSD image: 2 channels
    assert first["subject_id"][:2] == [first["subject_id"][0]] * 2  # a subject's crops stay together
    # the plain affine key follows each crop's transformed (1 mm, rotated) affine, not the 0.8 mm source
    assert torch.allclose(first["affine"].to(torch.float64), first["image"].affine.to(torch.float64))
    spacing = first["spacing"]
    assert torch.allclose(spacing, torch.ones_like(spacing), atol=1e-4)
