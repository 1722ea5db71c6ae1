"""Prediction write-back keeps the source's geometry header: ingest NIfTIs with unusual codes ->
grid inference with an identity "model" -> GridAggregator writes collections -> ``radiobject
export`` -> the exported predictions have the source's sform / qform (codes and parameters),
units, pixdim and slice fields; label predictions carry the label collection's label map."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from radiobject import RadiObject, WriteOptions
from radiobject.cli.main import main
from radiobject.ml import create_inference_dataloader
from radiobject.ml.aggregate import GridAggregator
from radiobject.model.labels import get_label_map, set_label_map
from tests.formats.test_nifti_header import raw_header

SHAPE = (9, 8, 7)
LABELS = {0: "background", 1: "liver", 2: "tumour"}
#: Geometry header fields a prediction on the source's grid must have exactly.
GEOMETRY = (
    "dim",
    "sform_code",
    "qform_code",
    "xyzt_units",
    "quatern_b",
    "quatern_c",
    "quatern_d",
    "qoffset_x",
    "qoffset_y",
    "qoffset_z",
    "srow_x",
    "srow_y",
    "srow_z",
    "dim_info",
    "slice_code",
    "slice_start",
    "slice_end",
    "slice_duration",
    "toffset",
)


def _odd(data: np.ndarray, i: int) -> nib.Nifti1Image:
    """sform_code 4 with a sheared sform, qform_code 1 with a different (rotated) qform, mm + ms."""
    sform = np.array([[-0.9, 0.1, 0.05, 30.5 + i], [0.12, 1.1, -0.2, -40.25], [0.0, 0.3, 2.5, 12.0], [0, 0, 0, 1]])
    c, s = np.cos(0.2 + i), np.sin(0.2 + i)
    qform = np.array([[0.8 * c, -1.2 * s, 0, -10], [0.8 * s, 1.2 * c, 0, 20.0], [0, 0, -2.4, 5.5], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, sform)
    img.set_sform(sform, code=4)
    img.set_qform(qform, code=1)
    img.header.set_xyzt_units("mm", "msec")
    img.header.set_dim_info(freq=0, phase=1, slice=2)
    img.header["slice_code"], img.header["slice_end"], img.header["slice_duration"] = 2, SHAPE[2] - 1, 0.05
    img.header["toffset"] = 1.5
    img.header["descrip"] = b"source only"
    return img


@pytest.fixture
def store(tmp_path: Path, backend: str) -> str:
    rng = np.random.default_rng(0)
    for d in ("img", "seg"):
        (tmp_path / d).mkdir()
    for i in range(3):
        image = rng.normal(100, 30, SHAPE).astype(np.float32)
        seg = rng.integers(0, 3, SHAPE).astype(np.uint8)
        nib.save(_odd(image, i), tmp_path / "img" / f"sub-0{i}.nii.gz")
        nib.save(_odd(seg, i), tmp_path / "seg" / f"sub-0{i}.nii.gz")
    uri = str(tmp_path / "store")
    globs = {"img": str(tmp_path / "img" / "*.nii.gz"), "seg": str(tmp_path / "seg" / "*.nii.gz")}
    radi = RadiObject.from_niftis(uri, globs, options=WriteOptions(backend=backend))
    set_label_map(radi["seg"], LABELS)
    return uri


def _infer(uri: str, **agg_options: object) -> tuple[GridAggregator, GridAggregator]:
    radi = RadiObject(uri)
    loader = create_inference_dataloader(
        radi, modalities="img", label="seg", patch_size=(4, 4, 4), overlap=0.5, batch_size=3
    )
    pred = GridAggregator(radi, loader.dataset, "pred")
    # the ignore below: options forwarded as given
    lab = GridAggregator(radi, loader.dataset, "pred_seg", argmax=True, **agg_options)  # type: ignore[arg-type]
    for batch in loader:
        pred.add_batch(batch["image"], batch)  # identity "model"
        onehot = torch.nn.functional.one_hot(batch["label"][:, 0].long(), len(LABELS))
        lab.add_batch(onehot.permute(0, 4, 1, 2, 3).float(), batch)  # a perfect segmenter
    pred.finalize()
    lab.finalize()
    return pred, lab


def test_exported_predictions_have_the_source_geometry_header(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _infer(store)
    out = tmp_path / "export"
    assert main(["export", store, str(out), "--format", "nifti", "--collections", "pred", "pred_seg"]) == 0
    capsys.readouterr()
    for i in range(3):
        sid = f"sub-0{i}"
        src_img, src_seg = tmp_path / "img" / f"{sid}.nii.gz", tmp_path / "seg" / f"{sid}.nii.gz"
        for src, exported in ((src_img, out / "pred" / f"{sid}.nii.gz"), (src_seg, out / "pred_seg" / f"{sid}.nii.gz")):
            a, b = raw_header(src), raw_header(exported)
            for key in GEOMETRY:
                np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=f"{sid} {key}")
            np.testing.assert_array_equal(a["pixdim"][:4], b["pixdim"][:4])
            assert b["descrip"] == b""  # the source's description is not the prediction's
            back = nib.load(exported)
            np.testing.assert_array_equal(back.affine, nib.load(src).affine)
            np.testing.assert_array_equal(back.header.get_qform(), nib.load(src).header.get_qform())
        pred = nib.load(out / "pred" / f"{sid}.nii.gz")
        assert pred.get_data_dtype() == np.float32
        np.testing.assert_allclose(np.asarray(pred.dataobj), np.asarray(nib.load(src_img).dataobj), rtol=1e-6)
        seg = nib.load(out / "pred_seg" / f"{sid}.nii.gz")
        assert seg.get_data_dtype() == np.uint8 and seg.header.get_intent()[0] == "label"
        np.testing.assert_array_equal(np.asarray(seg.dataobj), np.asarray(nib.load(src_seg).dataobj))


def test_label_predictions_carry_the_label_map(store: str) -> None:
    _infer(store)
    radi = RadiObject(store)
    lm = get_label_map(radi["pred_seg"])
    assert lm is not None and lm.names == LABELS
    assert get_label_map(radi["pred"]) is None  # averaged predictions are not labels
    vol = radi["pred_seg"].by_subject("sub-01")
    assert (vol.metadata["sform_code"], vol.metadata["qform_code"]) == (4, 1)
    assert (vol.metadata["xyz_units"], vol.metadata["t_units"]) == ("mm", "msec")


def test_an_explicit_label_map_wins(store: str) -> None:
    _infer(store, label_map={0: "bg", 1: "organ", 2: "lesion"})
    lm = get_label_map(RadiObject(store)["pred_seg"])
    assert lm is not None and lm.names == {0: "bg", 1: "organ", 2: "lesion"}


def test_write_predictions_whole_volumes_keep_the_source_header(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from radiobject.errors import AlignmentError
    from radiobject.ml.aggregate import write_predictions

    radi = RadiObject(store)
    segs = {f"sub-0{i}": torch.from_numpy(radi["seg"].by_subject(f"sub-0{i}").to_numpy()) for i in range(3)}
    with pytest.raises(AlignmentError, match="sub-01"):
        write_predictions(radi, "bad", {"sub-01": np.zeros((3, 3, 3), np.uint8)}, like="img")
    assert "bad" not in RadiObject(store).collection_names  # nothing written
    coll = write_predictions(radi, "whole", segs, like="img", label_map=LABELS)
    # the ignore below: the collection has a label map (written above)
    assert len(coll) == 3 and get_label_map(coll).names == LABELS  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="already exists"):
        write_predictions(radi, "whole", segs, like="img")
    assert main(["export", store, str(tmp_path / "e"), "--collections", "whole"]) == 0
    capsys.readouterr()
    for sid in segs:
        a, b = raw_header(tmp_path / "img" / f"{sid}.nii.gz"), raw_header(tmp_path / "e" / "whole" / f"{sid}.nii.gz")
        for key in GEOMETRY:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=f"{sid} {key}")
        assert b.get_intent()[0] == "label" and b.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(
            np.asarray(nib.load(tmp_path / "e" / "whole" / f"{sid}.nii.gz").dataobj), segs[sid].numpy()
        )
