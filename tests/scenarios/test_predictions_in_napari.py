"""An arg-max prediction written back by ``GridAggregator`` opens in napari as a labels layer."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


def test_argmax_prediction_is_a_label_collection(sample_store: Path) -> None:
    from radiobject import RadiObject
    from radiobject.ml import create_inference_dataloader
    from radiobject.ml.aggregate import GridAggregator
    from radiobject.model.labels import is_label_collection
    from radiobject.napari import get_reader

    radi = RadiObject(str(sample_store))
    loader = create_inference_dataloader(radi, modalities=["T1w"], patch_size=(32, 32, 32), overlap=0.25)
    net = torch.nn.Conv3d(1, 3, 3, padding=1)
    agg = GridAggregator(radi, loader.dataset, "pred_argmax", argmax=True)
    probs = GridAggregator(radi, loader.dataset, "pred_probs")
    with torch.no_grad():
        for batch in loader:
            out = net(batch["image"])
            agg.add_batch(out, batch)
            probs.add_batch(out[:, :1], batch)
    agg.finalize()
    probs.finalize()
    radi = RadiObject(str(sample_store))
    assert is_label_collection(radi["pred_argmax"])  # uint8 + NIfTI intent label, no map, no counts
    assert not is_label_collection(radi["pred_probs"])  # float probabilities stay an image
    assert not is_label_collection(radi["T1w"])
    reader = get_reader(str(sample_store))
    assert reader is not None
    kinds = {kw["name"].split()[0]: kind for _, kw, kind in reader(str(sample_store))}
    assert kinds["pred_argmax"] == "labels" and kinds["seg"] == "labels"
    assert kinds["pred_probs"] == "image" and kinds["T1w"] == "image"
