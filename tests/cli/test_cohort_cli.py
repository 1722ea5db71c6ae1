"""CLI: ingest-layout, export-nnunet, stats, split, resample, labels, --version, examples in --help."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiobject.cli.main import build_parser, main
from radiobject.model.radi_object import RadiObject
from tests.ingest.test_layouts import _bids, _msd, _nnunet


def test_version_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("radiobject ")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [n for n, p in sub.choices.items() if "examples:" not in p.format_help()]
    for n, p in sub.choices.items():  # nested commands too
        for a in p._actions:
            if a.__class__.__name__ == "_SubParsersAction":
                missing += [f"{n} {m}" for m, q in a.choices.items() if "examples:" not in q.format_help()]
    assert not missing, f"commands without examples in --help: {missing}"
    assert "examples:" in parser.format_help()


def test_nnunet_cli_roundtrip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _nnunet(tmp_path / "Dataset001_BraTS", n=4)
    store = str(tmp_path / "store")
    assert main(["ingest-layout", "nnunet", str(src), "-o", store, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["info", store, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["collections"]["label"]["labels"] == {"0": "background", "1": "edema", "2": "tumor"}
    assert info["collections"]["T1"]["spacings"] == {"0.8x0.8x2": 4}
    assert main(["stats", store, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["collections"]["label"]["class_voxels"]["1"] == 4 * 4
    assert {r["collection"] for r in stats["intensity"]} == {"T1", "FLAIR"}
    assert main(["split", store, "-k", "2", "--seed", "3"]) == 0
    meta = RadiObject(store).obs_meta
    assert sorted(meta["fold"].tolist()) == [0, 0, 1, 1] and set(meta["split"]) == {"train", "val"}
    assert main(["split", store, "--val-fraction", "0.5"]) == 0  # after k-fold: the stale fold is dropped
    meta = RadiObject(store).obs_meta
    assert "fold" not in meta.columns and sorted(meta["split"].tolist()) == ["train", "train", "val", "val"]
    assert "obs_meta columns: split)" in capsys.readouterr().out
    assert main(["resample", store, "label", "--spacing", "1.6,1,2", "--no-progress"]) == 0
    assert RadiObject(store)["label_1p6x1x2mm"].volume("BRATS_000").shape == (3, 4, 4)
    assert main(["labels", store, "label", "--set", "0=bg,1=edema,2=tumor", "--weights", "inverse"]) == 0
    assert "class weights (inverse)" in capsys.readouterr().out
    out = tmp_path / "Dataset002_Back"
    assert main(["export-nnunet", store, str(out), "--channels", "T1", "FLAIR"]) == 0
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["labels"]["bg"] == 0 and ds["numTraining"] == 4 and len(list((out / "imagesTr").iterdir())) == 8


def test_bids_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _bids(tmp_path / "bids")
    store = str(tmp_path / "store")
    assert main(["ingest-layout", "bids", str(root), "-o", store, "--incomplete", "error"]) == 1
    assert "sub-02_ses-pre: no dwi" in capsys.readouterr().err
    assert main(["ingest-layout", "bids", str(root), "-o", store, "--no-progress"]) == 0
    assert "sub-03: no images" in capsys.readouterr().err
    meta = RadiObject(store).obs_meta.set_index("obs_subject_id")
    assert meta.loc["sub-01_ses-pre", "participant_id"] == "sub-01" and pd.isna(meta.loc["sub-02_ses-pre", "age"])
    assert main(["split", store, "-k", "2"]) == 0  # grouped by participant_id: two participants, two folds
    folds = RadiObject(store).obs_meta.set_index("obs_subject_id")["fold"]
    assert folds["sub-01_ses-pre"] == folds["sub-01_ses-post"] != folds["sub-02_ses-pre"]


def test_glob_ingest_keeps_sub_and_na(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import nibabel as nib

    root = tmp_path / "ds"
    for s in ("01", "02"):
        (root / f"sub-{s}" / "anat").mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), root / f"sub-{s}/anat/sub-{s}_T1w.nii.gz")
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t30\nsub-02\tn/a\n")
    store = str(tmp_path / "store")
    assert (
        main(
            [
                "ingest",
                store,
                "--images",
                f"T1w={root}/sub-*/anat/sub-*_T1w.nii.gz",
                "--subjects",
                str(root / "participants.tsv"),
                "--no-progress",
            ]
        )
        == 0
    )
    meta = RadiObject(store).obs_meta.set_index("obs_subject_id")
    assert meta.loc["sub-01", "age"] == 30 and pd.isna(meta.loc["sub-02", "age"])
    (root / "bad.tsv").write_text("participant_id\tage\n1\t30\n")
    assert (
        main(
            [
                "ingest",
                str(tmp_path / "s2"),
                "--images",
                f"T1w={root}/sub-*/anat/sub-*_T1w.nii.gz",
                "--subjects",
                str(root / "bad.tsv"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "none of its 1 subject IDs" in capsys.readouterr().err


def test_ingest_reports_incomplete_up_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import nibabel as nib

    root = tmp_path / "ds"
    for s in ("01", "02"):
        (root / f"sub-{s}").mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), root / f"sub-{s}/img.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), root / "sub-01/seg.nii.gz")
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t30\nsub-02\t40\nsub-03\t50\n")
    assert (
        main(
            [
                "ingest",
                str(tmp_path / "store"),
                "--images",
                f"img={root}/*/img.nii.gz",
                f"seg={root}/*/seg.nii.gz",
                "--subjects",
                str(root / "participants.tsv"),
                "--no-progress",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "2 incomplete subject(s)" in err and "sub-02: no seg" in err and "sub-03: no images" in err


def test_ingest_with_layout_flag(tmp_path: Path) -> None:
    src = _nnunet(tmp_path / "Dataset003_X", n=2)
    store = str(tmp_path / "store")
    assert main(["ingest", store, "--layout", "nnunet", str(src), "--no-progress", "--compression", "zstd"]) == 0
    radi = RadiObject(store)
    assert set(radi) == {"FLAIR", "T1", "label"}
    assert radi.label.obs["codec"].iloc[0].startswith("zstd") and "class_counts" in radi.label.obs.columns
    assert main(["ingest", str(tmp_path / "s2"), "--layout", "nope", str(src)]) == 2


def test_ingest_records_class_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radiobject.ingest.sample import make_sample_cohort

    c = make_sample_cohort(tmp_path / "src", 3, (12, 10, 8))
    store = str(tmp_path / "store")
    assert main(["ingest", store, "--manifest", str(c.manifest), "--no-progress"]) == 0
    obs = RadiObject(store).seg.obs
    for r in obs.to_dict("records"):
        arr = RadiObject(store).seg.volume(r["obs_id"]).to_numpy()
        v, n = np.unique(arr, return_counts=True)
        assert json.loads(r["class_counts"]) == {str(a): int(b) for a, b in zip(v, n, strict=True)}
    assert "class_counts" not in RadiObject(store).T1w.obs.columns  # images are not counted
    capsys.readouterr()
    assert main(["info", store]) == 0
    assert "seg: labels 0, 1, 2" in capsys.readouterr().out


def test_msd_4d_qc_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _msd(tmp_path / "Task05_Prostate")
    (src / "imagesTr" / "._prostate_00.nii.gz").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork
    store = str(tmp_path / "store")
    assert main(["ingest-layout", "msd", str(src), "-o", store, "--incomplete", "skip", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["info", store]) == 0
    out = capsys.readouterr().out
    assert "image: spacing 0.8x0.8x2 mm, orientation RAS, channels T2, ADC" in out
    assert "label: labels 0=background, 1=PZ, 2=TZ" in out
    assert main(["qc", store, "-o", str(tmp_path / "qc.png")]) == 0
    assert "(2 channel columns)" in capsys.readouterr().out  # both channels of the 4D image
    assert main(["stats", store, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["intensity"]
    got = [(r["collection"], r["channel"], r["foreground"]) for r in rows]
    assert got == [("image", 0, "label"), ("image", 1, "label")]
