"""BIDS, MSD and nnU-Net layouts: synthetic dataset trees read, ingested and exported back."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from radiobject.errors import LayoutError, SubjectTableError
from radiobject.ingest.layouts import ingest_layout, ingest_nnunet
from radiobject.ingest.layouts.bids import parse_bids_name, plan_bids
from radiobject.ingest.layouts.msd import export_nnunet, plan_msd, plan_nnunet
from radiobject.ingest.manifest import plan_from_globs
from radiobject.model.labels import get_label_map, read_collection_meta
from radiobject.model.radi_object import RadiObject

AFF = np.diag([0.8, 0.8, 2.0, 1.0])


def _save(path: Path, arr: np.ndarray, affine: np.ndarray = AFF) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, affine), str(path))


def _bids(root: Path) -> Path:
    """sub-01 (ses-pre, ses-post; T1w + dwi), sub-02 (ses-pre: T1w only), sub-03 only in participants.tsv."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "toy", "BIDSVersion": "1.9.0"}))
    (root / "participants.tsv").write_text(
        "participant_id\tage\tgroup\nsub-01\t34\tpatient\nsub-02\tn/a\tcontrol\nsub-03\t51\tn/a\n"
    )
    (root / "T1w.json").write_text(json.dumps({"MagneticFieldStrength": 3, "EchoTime": 0.003}))
    for sub, sessions in (("sub-01", ("pre", "post")), ("sub-02", ("pre",))):
        (root / sub / f"{sub}_sessions.tsv").parent.mkdir(parents=True, exist_ok=True)
        (root / sub / f"{sub}_sessions.tsv").write_text(
            "session_id\tacq_time\n" + "".join(f"ses-{s}\t{i}\n" for i, s in enumerate(sessions))
        )
        for ses in sessions:
            stem = root / sub / f"ses-{ses}"
            t1 = stem / "anat" / f"{sub}_ses-{ses}_T1w.nii.gz"
            _save(t1, rng.normal(size=(6, 5, 4)).astype(np.float32))
            side = {"EchoTime": 0.005, "SliceTiming": [0, 1]}
            (stem / "anat" / f"{sub}_ses-{ses}_T1w.json").write_text(json.dumps(side))
            if sub == "sub-01":
                dwi = stem / "dwi" / f"{sub}_ses-{ses}_dwi.nii.gz"
                _save(dwi, rng.normal(size=(6, 5, 4, 3)).astype(np.float32))
                (stem / "dwi" / f"{sub}_ses-{ses}_dwi.bval").write_text("0 1000 1000\n")
                (stem / "dwi" / f"{sub}_ses-{ses}_dwi.bvec").write_text("0 1 0\n0 0 1\n0 0 0\n")
    return root


def test_bids_names() -> None:
    assert parse_bids_name("sub-01_ses-pre_acq-hr_T1w.nii.gz") == ({"sub": "01", "ses": "pre", "acq": "hr"}, "T1w")
    assert parse_bids_name("t1.nii.gz") is None and parse_bids_name("ses-1_sub-01_T1w.nii") is None


def test_bids_plan(tmp_path: Path) -> None:
    lp = plan_bids(_bids(tmp_path / "bids"))
    p = lp.plan
    assert sorted(p.collections) == ["T1w", "dwi"]
    assert sorted({t.subject_id for t in p.tasks}) == ["sub-01_ses-post", "sub-01_ses-pre", "sub-02_ses-pre"]
    meta = p.obs_meta.set_index("obs_subject_id")
    assert meta.loc["sub-01_ses-post", "participant_id"] == "sub-01"
    assert meta.loc["sub-01_ses-post", "session_id"] == "ses-post" and meta.loc["sub-01_ses-post", "acq_time"] == 1
    assert meta.loc["sub-01_ses-pre", "age"] == 34 and pd.isna(meta.loc["sub-02_ses-pre", "age"])  # n/a is missing
    t1 = next(t for t in p.tasks if t.collection == "T1w" and t.subject_id == "sub-01_ses-pre")
    # inheritance: the top-level sidecar gives the field strength, the file's own sidecar wins for EchoTime
    assert t1.columns["MagneticFieldStrength"] == 3 and t1.columns["EchoTime"] == 0.005
    assert json.loads(t1.columns["SliceTiming"]) == [0, 1]
    dwi = next(t for t in p.tasks if t.collection == "dwi")
    diff = dwi.metadata["diffusion"]
    assert diff["bvals"] == [0.0, 1000.0, 1000.0]
    assert diff["bvecs"] == [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    from radiobject.formats.dicom.dwi import fsl_text

    bval, bvec = fsl_text(diff)  # written back as the same files
    assert bval.split() == ["0", "1000", "1000"] and bvec.splitlines() == ["0 1 0", "0 0 1", "0 0 0"]
    assert {str(i) for i in lp.incomplete} == {"sub-02_ses-pre: no dwi", "sub-03: no images"}


def test_bids_ingest(tmp_path: Path) -> None:
    root = _bids(tmp_path / "bids")  # the DWI on its own, coarser grid (as in real data)
    for ses in ("pre", "post"):
        dwi = root / "sub-01" / f"ses-{ses}" / "dwi" / f"sub-01_ses-{ses}_dwi.nii.gz"
        _save(dwi, np.ones((3, 3, 2, 3), np.float32), np.diag([2.0, 2.0, 4.0, 1.0]))
    lp = plan_bids(root)
    report = ingest_layout(str(tmp_path / "store"), lp, progress=False)
    assert report.ok, report.summary_table()
    radi = RadiObject(str(tmp_path / "store"))
    assert sorted(radi.obs_subject_ids) == ["sub-01_ses-post", "sub-01_ses-pre", "sub-02_ses-pre"]
    vol = radi.dwi.by_subject("sub-01_ses-pre")
    assert vol.info.metadata["diffusion"]["bvals"] == [0.0, 1000.0, 1000.0]
    assert radi.T1w.obs.set_index("obs_id").loc["sub-02_ses-pre", "EchoTime"] == 0.005
    assert pd.isna(radi.obs_meta.set_index("obs_subject_id").loc["sub-02_ses-pre", "age"])


def test_bids_incomplete_policies(tmp_path: Path) -> None:
    lp = plan_bids(_bids(tmp_path / "bids"))
    with pytest.raises(LayoutError, match="sub-02_ses-pre: no dwi"):
        ingest_layout(str(tmp_path / "s1"), lp, incomplete="error")
    notes: list[str] = []
    report = ingest_layout(str(tmp_path / "s2"), lp, incomplete="skip", log=notes.append)
    assert sorted(RadiObject(str(tmp_path / "s2")).obs_subject_ids) == ["sub-01_ses-post", "sub-01_ses-pre"]
    assert report.ok and "2 incomplete subject(s) (skip):" in notes and "  sub-02_ses-pre: no dwi" in notes


def test_bids_glob_joins_participants(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for s in ("01", "02"):
        _save(root / f"sub-{s}" / "anat" / f"sub-{s}_T1w.nii.gz", np.zeros((3, 3, 3), np.float32))
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t30\nsub-02\tn/a\n")
    plan = plan_from_globs({"T1w": str(root / "sub-*/anat/sub-*_T1w.nii.gz")}, subjects=root / "participants.tsv")
    meta = plan.obs_meta.set_index("obs_subject_id")
    assert list(meta.index) == ["sub-01", "sub-02"]
    assert meta.loc["sub-01", "age"] == 30 and pd.isna(meta.loc["sub-02", "age"])
    (root / "bad.tsv").write_text("participant_id\tage\n01\t30\n")
    with pytest.raises(SubjectTableError, match="none of its 1 subject IDs"):
        plan_from_globs({"T1w": str(root / "sub-*/anat/sub-*_T1w.nii.gz")}, subjects=root / "bad.tsv")


# ---------------------------------------------------------------------------------- MSD / nnU-Net
def _seg(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """4 voxels of class 1, 5 of class 2 (one of them at a random corner-free place)."""
    seg = np.zeros(shape, np.uint8)
    seg[1:3, 1:3, 1:2] = 1
    seg[3:5, 2:4, 2:3] = 2
    seg[0, int(rng.integers(0, shape[1])), 3] = 2
    return seg


def _msd(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(1)
    training = []
    for i in range(n):
        img, lab = f"./imagesTr/prostate_{i:02d}.nii.gz", f"./labelsTr/prostate_{i:02d}.nii.gz"
        _save(root / img, rng.normal(size=(6, 5, 4, 2)).astype(np.float32))
        if i < n - 1:
            _save(root / lab, _seg(rng, (6, 5, 4)))
        training.append({"image": img, "label": lab})
    _save(root / "imagesTs" / "prostate_99.nii.gz", rng.normal(size=(6, 5, 4, 2)).astype(np.float32))
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "name": "Prostate",
                "modality": {"0": "T2", "1": "ADC"},
                "labels": {"0": "background", "1": "PZ", "2": "TZ"},
                "numTraining": n,
                "training": training,
                "test": ["./imagesTs/prostate_99.nii.gz"],
            }
        )
    )
    return root


def test_msd(tmp_path: Path) -> None:
    lp = plan_msd(_msd(tmp_path / "Task05_Prostate"))
    assert lp.plan.collections == ["image", "label"]
    assert lp.collection_meta["image"]["channel_names"] == ["T2", "ADC"]
    assert [str(i) for i in lp.incomplete] == ["prostate_02: no label"]
    ingest_layout(str(tmp_path / "store"), lp, incomplete="skip")
    radi = RadiObject(str(tmp_path / "store"))
    assert radi.obs_subject_ids == ["prostate_00", "prostate_01"]
    assert get_label_map(radi.label).names == {0: "background", 1: "PZ", 2: "TZ"}
    assert read_collection_meta(radi.image)["channel_names"] == ["T2", "ADC"]
    counts = json.loads(radi.label.obs.set_index("obs_id").loc["prostate_00", "class_counts"])
    assert counts == {"0": 6 * 5 * 4 - 4 - 5, "1": 4, "2": 5}


def test_msd_4d_images_export_one_3d_file_per_channel(tmp_path: Path) -> None:
    src = _msd(tmp_path / "Task05_Prostate")
    ingest_layout(str(tmp_path / "store"), plan_msd(src), incomplete="skip")
    out = export_nnunet(RadiObject(str(tmp_path / "store")), tmp_path / "Dataset005_Prostate")
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "T2", "1": "ADC"} and ds["numTraining"] == 2
    for case in ("prostate_00", "prostate_01"):
        a = nib.load(src / "imagesTr" / f"{case}.nii.gz")
        for c in range(2):
            b = nib.load(out / "imagesTr" / f"{case}_{c:04d}.nii.gz")
            assert b.shape == (6, 5, 4) and b.get_data_dtype() == np.float32
            assert np.array_equal(np.asarray(a.dataobj)[..., c], np.asarray(b.dataobj))
            assert np.allclose(a.affine, b.affine)
        assert not (out / "imagesTr" / f"{case}_0002.nii.gz").exists()
    assert plan_nnunet(out).plan.collections == ["T2", "ADC", "label"]  # nnU-Net reads it back as two channels


def _nnunet(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(2)
    for i in range(n):
        case = f"BRATS_{i:03d}"
        for c in range(2):
            _save(root / "imagesTr" / f"{case}_{c:04d}.nii.gz", rng.normal(size=(6, 5, 4)).astype(np.float32))
        _save(root / "labelsTr" / f"{case}.nii.gz", _seg(rng, (6, 5, 4)))
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "T1", "1": "FLAIR"},
                "labels": {"background": 0, "edema": 1, "tumor": 2, "whole": [1, 2]},
                "numTraining": n,
                "file_ending": ".nii.gz",
                "regions_class_order": [1, 2],
            }
        )
    )
    return root


def test_nnunet_roundtrip(tmp_path: Path) -> None:
    src = _nnunet(tmp_path / "Dataset001_BraTS")
    lp = plan_nnunet(src)
    assert lp.plan.collections == ["T1", "FLAIR", "label"] and not lp.incomplete
    report = ingest_nnunet(src, str(tmp_path / "store"))
    assert report.ok, report.summary_table()
    radi = RadiObject(str(tmp_path / "store"))
    assert get_label_map(radi.label).names == {0: "background", 1: "edema", 2: "tumor"}
    out = export_nnunet(radi, tmp_path / "Dataset002_Back", channels=["T1", "FLAIR"], label="label")
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "T1", "1": "FLAIR"} and ds["labels"]["tumor"] == 2
    assert ds["numTraining"] == 3 and ds["file_ending"] == ".nii.gz"
    for case in ("BRATS_000", "BRATS_002"):
        for c in range(2):
            a = nib.load(src / "imagesTr" / f"{case}_{c:04d}.nii.gz")
            b = nib.load(out / "imagesTr" / f"{case}_{c:04d}.nii.gz")
            assert np.array_equal(a.get_fdata(), b.get_fdata()) and np.allclose(a.affine, b.affine)
        assert np.array_equal(
            np.asarray(nib.load(src / "labelsTr" / f"{case}.nii.gz").dataobj),
            np.asarray(nib.load(out / "labelsTr" / f"{case}.nii.gz").dataobj),
        )
    assert plan_nnunet(out).plan.collections == ["T1", "FLAIR", "label"]


def test_nnunet_errors(tmp_path: Path) -> None:
    root = _nnunet(tmp_path / "ds")
    (root / "imagesTr" / "BRATS_001_0001.nii.gz").unlink()
    lp = plan_nnunet(root)
    assert [str(i) for i in lp.incomplete] == ["BRATS_001: no FLAIR"]
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0}}))
    with pytest.raises(LayoutError, match="channel_names"):
        plan_nnunet(root)
    with pytest.raises(LayoutError, match="dataset.json"):
        plan_msd(tmp_path / "nowhere")


def test_bids_session_glob_joins_participants(tmp_path: Path) -> None:
    root = _bids(tmp_path / "bids")
    spec = str(root / "sub-*/ses-*/anat/sub-*_ses-*_T1w.nii.gz")
    plan = plan_from_globs({"T1w": spec}, subjects=root / "participants.tsv")
    meta = plan.obs_meta.set_index("obs_subject_id")
    assert sorted(meta.index) == ["sub-01_ses-post", "sub-01_ses-pre", "sub-02_ses-pre"]
    assert meta.loc["sub-01_ses-post", "participant_id"] == "sub-01"
    assert meta.loc["sub-01_ses-post", "session_id"] == "ses-post"
    assert meta.loc["sub-01_ses-post", "age"] == 34 and pd.isna(meta.loc["sub-02_ses-pre", "age"])


def test_nnunet_misaligned_label_held_back(tmp_path: Path) -> None:
    root = _nnunet(tmp_path / "ds")
    _save(root / "labelsTr" / "BRATS_001.nii.gz", np.zeros((6, 5, 3), np.uint8))  # one slice short
    report = ingest_layout(str(tmp_path / "store"), plan_nnunet(root))
    assert {r["obs_id"] for r in report.failed} == {"BRATS_001"} and "misaligned" in report.failed[0]["error"]
    assert RadiObject(str(tmp_path / "store")).label.obs_ids == ["BRATS_000", "BRATS_002"]


def test_bids_inheritance(tmp_path: Path) -> None:
    """Top-level dwi.bval / dwi.bvec apply to every DWI; a subject-level acq sidecar beats T1w.json."""
    root = tmp_path / "bids"
    _save(root / "sub-01" / "anat" / "sub-01_acq-hr_T1w.nii.gz", np.zeros((3, 3, 3), np.float32))
    _save(root / "sub-01" / "dwi" / "sub-01_dwi.nii.gz", np.zeros((3, 3, 3, 2), np.float32))
    (root / "dwi.bval").write_text("0 700\n")
    (root / "dwi.bvec").write_text("0 1\n0 0\n0 0\n")
    (root / "T1w.json").write_text(json.dumps({"EchoTime": 1, "FlipAngle": 8}))
    (root / "acq-hr_T1w.json").write_text(json.dumps({"EchoTime": 2}))
    (root / "sub-01" / "sub-01_acq-hr_T1w.json").write_text(json.dumps({"FlipAngle": 9}))
    tasks = {t.collection: t for t in plan_bids(root).plan.tasks}
    assert tasks["acq-hr_T1w"].columns == {"EchoTime": 2, "FlipAngle": 9}
    assert tasks["dwi"].metadata["diffusion"]["bvals"] == [0.0, 700.0]
