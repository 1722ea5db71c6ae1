"""nnU-Net raw dataset: ingest, then export back (region labels and regions_class_order kept)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.scenarios._trees import make_nnunet


def test_region_labels_round_trip(tmp_path: Path) -> None:
    from radiobject import RadiObject
    from radiobject.ingest.layouts import ingest_nnunet
    from radiobject.ingest.layouts.msd import export_nnunet

    src = make_nnunet(tmp_path / "Dataset001_X")
    ds = json.loads((src / "dataset.json").read_text())
    ds["labels"] = {"background": 0, "whole": [1, 2], "core": 2}
    ds["regions_class_order"] = [1, 2]
    (src / "dataset.json").write_text(json.dumps(ds))
    ingest_nnunet(src, str(tmp_path / "store"))
    radi = RadiObject(str(tmp_path / "store"))
    out = export_nnunet(radi, tmp_path / "Dataset101_Back", channels=["T1", "FLAIR"], label="label")
    back = json.loads((out / "dataset.json").read_text())
    assert back["labels"] == ds["labels"]  # no invented "label 1" class next to the regions
    assert back["regions_class_order"] == [1, 2]
    assert back["channel_names"] == ds["channel_names"] and back["numTraining"] == 3
    a, b = nib.load(str(src / "labelsTr" / "case_001.nii.gz")), nib.load(str(out / "labelsTr" / "case_001.nii.gz"))
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_array_equal(a.affine, b.affine)


def test_plain_labels_round_trip(tmp_path: Path) -> None:
    from radiobject import RadiObject
    from radiobject.ingest.layouts import ingest_nnunet
    from radiobject.ingest.layouts.msd import export_nnunet

    src = make_nnunet(tmp_path / "Dataset001_X")
    ingest_nnunet(src, str(tmp_path / "store"))
    out = export_nnunet(RadiObject(str(tmp_path / "store")), tmp_path / "back", channels=["T1", "FLAIR"])
    back = json.loads((out / "dataset.json").read_text())
    assert back["labels"] == {"background": 0, "edema": 1, "tumour": 2} and "regions_class_order" not in back


def test_export_defaults_to_every_image_collection_in_channel_order(tmp_path: Path) -> None:
    from radiobject import RadiObject
    from radiobject.cli.main import main
    from radiobject.ingest.layouts import ingest_nnunet

    src = make_nnunet(tmp_path / "Dataset001_X")
    ingest_nnunet(src, str(tmp_path / "store"))
    assert main(["export-nnunet", str(tmp_path / "store"), str(tmp_path / "back")]) == 0
    back = json.loads((tmp_path / "back" / "dataset.json").read_text())
    assert back["channel_names"] == json.loads((src / "dataset.json").read_text())["channel_names"]
    assert len(list((tmp_path / "back" / "imagesTr").glob("*_0001.nii.gz"))) == back["numTraining"]
    assert "label" in RadiObject(str(tmp_path / "store")).collection_names
