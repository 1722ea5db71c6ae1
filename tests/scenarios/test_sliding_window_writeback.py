"""MONAI ``sliding_window_inference`` over a validation loader, written back, exported, read by nibabel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
inferers = pytest.importorskip("monai.inferers")


def test_channel_first_outputs_written_back_and_exported(sample_store: Path, tmp_path: Path) -> None:
    import nibabel as nib

    from radiobject import RadiObject
    from radiobject.cli.main import main
    from radiobject.ml import create_validation_dataloader
    from radiobject.ml.aggregate import write_predictions

    radi = RadiObject(str(sample_store))
    net = torch.nn.Conv3d(1, 2, 3, padding=1)
    probs, labels = {}, {}
    with torch.no_grad():
        for batch in create_validation_dataloader(radi, modalities=["T1w"], label="seg"):
            out = inferers.sliding_window_inference(
                batch["image"], roi_size=(32, 32, 32), sw_batch_size=2, predictor=net, overlap=0.25
            )
            sid = batch["subject_id"][0]
            probs[sid] = out[0]  # channel-first (2, x, y, z), as MONAI gives it
            labels[sid] = out[0].argmax(0).to(torch.uint8)
    write_predictions(radi, "probs", probs, like="T1w")
    write_predictions(radi, "pred", labels, like="T1w", label_map={0: "bg", 1: "fg"})
    radi = RadiObject(str(sample_store))
    sid = radi.obs_subject_ids[0]
    vol = radi["probs"].by_subject(sid)
    assert vol.shape == (*radi.T1w.by_subject(sid).shape[:3], 2)
    np.testing.assert_allclose(vol.to_numpy(), np.moveaxis(probs[sid].numpy(), 0, -1), rtol=1e-6)
    assert (
        main(
            ["export", str(sample_store), "--format", "nifti", str(tmp_path / "out"), "--collections", "pred", "probs"]
        )
        == 0
    )
    src = radi.T1w.by_subject(sid)
    img = nib.load(str(tmp_path / "out" / "pred" / f"{sid}.nii.gz"))
    np.testing.assert_array_equal(img.affine, src.affine)
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels[sid].numpy())
    assert img.header.get_intent()[0] == "label"
    assert nib.load(str(tmp_path / "out" / "probs" / f"{sid}.nii.gz")).shape == vol.shape
