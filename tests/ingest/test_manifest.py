"""Cohort descriptions -> tasks: manifests, globs, DICOM trees, the sample cohort."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from radiobject.errors import ImageReadError
from radiobject.ingest.manifest import plan_from_dicom_root, plan_from_globs, plan_from_manifest, subject_id_for
from radiobject.ingest.sample import SampleCohort, make_sample_cohort
from tests.conftest import data_path


def test_sample_cohort_layout(tmp_path: Path) -> None:
    c = make_sample_cohort(tmp_path, 3, (10, 12, 8), seed=1)
    assert c.subjects == ("sub-01", "sub-02", "sub-03")
    t1 = nib.load(str(tmp_path / "sub-02" / "anat" / "sub-02_T1w.nii.gz"))
    seg = nib.load(str(tmp_path / "sub-02" / "anat" / "sub-02_seg.nii.gz"))
    assert t1.shape == seg.shape == (10, 12, 8) and np.allclose(t1.affine, seg.affine)
    assert seg.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2}
    again = make_sample_cohort(tmp_path / "again", 3, (10, 12, 8), seed=1)
    assert np.array_equal(
        np.asarray(t1.dataobj), np.asarray(nib.load(str(again.folder / "sub-02/anat/sub-02_T1w.nii.gz")).dataobj)
    )
    assert len(pd.read_csv(c.manifest)) == 9 and pd.read_csv(c.participants).columns[0] == "participant_id"


def test_manifest_columns_split_between_obs_meta_and_obs(cohort: SampleCohort) -> None:
    df = pd.read_csv(cohort.manifest, dtype=str)
    df["age"] = 40
    df["session"] = "ses-01"  # constant within a subject -> obs_meta
    df["scanner"] = ["A", "B", "C"] * (len(df) // 3)  # varies within a subject -> obs
    plan = plan_from_manifest(df, subjects=cohort.participants, base_dir=cohort.folder)
    assert len(plan.tasks) == 12 and not plan.problems
    t = plan.tasks[0]
    assert t.columns == {"scanner": "A"} and os.path.isabs(t.path) and t.obs_id == t.subject_id == "sub-01"
    meta = plan.obs_meta.set_index("obs_subject_id")
    assert list(meta.index) == list(cohort.subjects)
    assert {"session", "age", "sex", "site", "age_subjects"} <= set(meta.columns)
    forced = plan_from_manifest(df, obs_columns=["session"], base_dir=cohort.folder)
    assert "session" in forced.tasks[0].columns and "session" not in forced.obs_meta.columns


def test_manifest_file_paths_relative_to_manifest(cohort: SampleCohort, tmp_path: Path) -> None:
    plan = plan_from_manifest(cohort.manifest)
    assert all(Path(t.path).is_file() for t in plan.tasks)
    pq = tmp_path / "m.parquet"
    pd.read_csv(cohort.manifest).assign(path=lambda d: [str(cohort.folder / p) for p in d.path]).to_parquet(pq)
    assert [t.path for t in plan_from_manifest(pq).tasks] == [t.path for t in plan.tasks]


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="subject column"):
        plan_from_manifest(pd.DataFrame({"collection": ["a"], "path": ["x"]}))
    with pytest.raises(ValueError, match="'path' column"):
        plan_from_manifest(pd.DataFrame({"subject_id": ["a"], "collection": ["a"]}))
    with pytest.raises(ValueError, match="clash"):
        plan_from_manifest(
            pd.DataFrame({"subject_id": ["a", "a"], "collection": ["c", "d"], "path": ["x", "y"], "shape": ["1", "2"]})
        )
    plan = plan_from_manifest(pd.DataFrame({"subject_id": ["a", "b"], "collection": ["c", "c"], "path": ["x", None]}))
    assert len(plan.tasks) == 1 and plan.problems[0].reason == "no path given"


def test_ids_stay_text(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("subject_id,collection,path,age\n007,T1w,a.nii.gz,31\n")
    plan = plan_from_manifest(m)
    assert plan.tasks[0].subject_id == "007" and plan.obs_meta["age"].tolist() == [31]


def test_glob_subject_ids(cohort: SampleCohort) -> None:
    plan = plan_from_globs({"T1w": cohort.glob("T1w"), "seg": cohort.glob("seg")})
    assert [t.subject_id for t in plan.tasks[:4]] == list(cohort.subjects)
    assert plan.obs_meta["obs_subject_id"].tolist() == list(cohort.subjects)
    # two wildcards matching the same text give the ID once
    spec = str(cohort.folder / "sub-*" / "anat" / "sub-*_T1w.nii.gz")
    assert subject_id_for(str(cohort.folder / "sub-03/anat/sub-03_T1w.nii.gz"), spec) == "sub-03"  # BIDS: keeps sub-
    plan = plan_from_globs({"T1w": str(cohort.folder / "*/anat/*.nii.gz")}, subject_pattern=r"/(sub-\d+)_")
    assert sorted({t.subject_id for t in plan.tasks}) == list(cohort.subjects)


def test_glob_without_matches_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="matched no files") as info:
        plan_from_globs({"T1w": str(tmp_path / "*.nii.gz")})
    assert str(tmp_path) in str(info.value)


def test_dicom_root(tmp_path: Path) -> None:
    src = data_path("dicom", "dicom2nifti", "anatomical")
    root = tmp_path / "dicom"
    root.mkdir()
    os.symlink(src / "001", root / "subjA")
    os.symlink(src / "001_implicit", root / "subjB")
    (root / "subjC").mkdir()
    (root / "subjC" / "notes.txt").write_text("not dicom")
    plan = plan_from_dicom_root(root)
    assert [t.subject_id for t in plan.tasks] == ["subjA", "subjB"]
    assert len({t.collection for t in plan.tasks}) == 1 and plan.tasks[0].format == "dicom"
    assert len(plan.tasks[0].files) == 4 and plan.tasks[0].columns["modality"]
    assert plan.problems[0].subject_id == "subjC" and "no DICOM series" in plan.problems[0].reason
    by_mod = plan_from_dicom_root(root, collection_key="modality")
    assert by_mod.tasks[0].collection == by_mod.tasks[0].columns["modality"]
