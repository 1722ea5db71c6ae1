"""``loader.dataset`` wrapped in the user's own ``torch`` / MONAI ``DataLoader`` (their default collate)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kind", ["torch", "monai"])
def test_factory_dataset_in_plain_dataloader(sample_store: Path, kind: str) -> None:
    from radiobject import RadiObject
    from radiobject.ml import create_training_dataloader

    radi = RadiObject(str(sample_store))
    ours = create_training_dataloader(radi, modalities=["T1w"], label="seg", patch_size=(16, 16, 16), batch_size=2)
    if kind == "torch":
        dl = torch.utils.data.DataLoader(ours.dataset, batch_size=3)
    else:
        monai_data = pytest.importorskip("monai.data")
        dl = monai_data.DataLoader(ours.dataset, batch_size=3)
    batches = list(dl)
    assert [b["image"].shape[0] for b in batches] == [3, 1]  # 4 subjects, batch 3
    first = batches[0]
    assert tuple(first["image"].shape[1:]) == (1, 16, 16, 16) and first["label"].shape == first["image"].shape
    assert first["affine"].shape == (3, 4, 4) and len(first["subject_id"]) == 3
    # the very samples our own loader reads (same dataset, same epoch / indices)
    same = ours.collate_fn(ours.dataset.__getitems__([0, 1, 2]))
    assert torch.equal(same["image"], first["image"]) and same["subject_id"] == first["subject_id"]
