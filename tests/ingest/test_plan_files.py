"""One planner for the Python file constructors (``radiobject.ingest.entry_points.plan_files``):
``RadiObject.from_files`` and ``VolumeCollection.from_files`` plan, name and refuse files alike."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject import RadiObject, VolumeCollection
from radiobject.errors import DuplicateIdError, InvalidIdError
from radiobject.ingest.entry_points import collection_tasks, plan_files, store_plan
from radiobject.ingest.sample import SampleCohort
from tests.conftest import data_path


def test_store_and_collection_plans_are_the_same_tasks(cohort: SampleCohort) -> None:
    t1 = str(cohort.folder / "*/anat/*_T1w.nii.gz")
    seg = {s: str(cohort.folder / s / "anat" / f"{s}_seg.nii.gz") for s in cohort.subjects}
    plan = store_plan({"T1w": t1, "seg": seg}, fmt="nifti", subject_pattern=r"(sub-\d+)_")
    by_coll = {c: [t for t in plan.tasks if t.collection == c] for c in ("T1w", "seg")}
    assert by_coll["T1w"] == collection_tasks(t1, fmt="nifti", subject_pattern=r"(sub-\d+)_", name="T1w")
    assert by_coll["seg"] == collection_tasks(seg, fmt="nifti", name="seg")
    assert [t.subject_id for t in by_coll["seg"]] == list(cohort.subjects)
    assert all(t.obs_id == t.subject_id and t.row == f"{t.collection}: {t.path}" for t in plan.tasks)


def test_two_files_of_one_subject_are_one_error_at_both_levels(cohort: SampleCohort, tmp_path: Path) -> None:
    one = str(cohort.folder / "sub-01/anat/sub-01_T1w.nii.gz")
    other = str(cohort.folder / "sub-02/anat/sub-02_T1w.nii.gz")
    with pytest.raises(DuplicateIdError, match="collection 'T1w'.*sub-01_T1w.nii.gz and .*sub-02_T1w") as info:
        RadiObject.from_niftis(tmp_path / "s", {"T1w": [one, other]}, subject_pattern=r"(sub-)")  # was AlignmentError
    assert info.value.key == "sub-"
    with pytest.raises(DuplicateIdError, match="collection 'c'.*sub-01_T1w.nii.gz and .*sub-02_T1w"):
        VolumeCollection.from_files(tmp_path / "c", [one, other], subject_pattern=r"(sub-)")
    assert not (tmp_path / "s").exists() and not (tmp_path / "c").exists()


def test_mapping_ids_are_checked_when_planned_at_both_levels(cohort: SampleCohort, tmp_path: Path) -> None:
    f = str(cohort.folder / "sub-01/anat/sub-01_T1w.nii.gz")
    for make in (
        lambda: RadiObject.from_files(tmp_path / "s", {"T1w": {"../up": f}}),
        lambda: VolumeCollection.from_files(tmp_path / "c", {"../up": f}),  # type: ignore[arg-type]
        lambda: plan_files("T1w", {"../up": f}),
    ):
        with pytest.raises(InvalidIdError, match="subject ID of collection 'T1w'|subject ID of collection 'c'"):
            make()
    assert not (tmp_path / "s").exists() and not (tmp_path / "c").exists()


def test_a_store_collection_given_one_dicom_series_folder_is_one_volume(tmp_path: Path) -> None:
    """A folder given for ``fmt="dicom"`` is one series at both levels (the store planner listed
    its 150 files as 150 volumes)."""
    folder = data_path("dicom", "dcm_qa_nih", "In", "20180918GE", "mr_0004")
    tasks = plan_files("bold", str(folder), fmt="dicom")
    assert [(t.subject_id, t.path) for t in tasks] == [("mr_0004", str(folder))]
    assert collection_tasks(str(folder), fmt="dicom", name="bold") == tasks
    radi = RadiObject.from_dicoms(tmp_path / "s", {"bold": str(folder)})
    assert radi.obs_subject_ids == ["mr_0004"] and radi.bold.loc["mr_0004"].shape == (64, 64, 15, 10)


def test_dicom_collection_ids_are_folder_names_store_ids_what_the_glob_matched() -> None:
    root = data_path("dicom", "dcm_qa_nih", "In", "20180918GE")
    spec = str(root / "mr_000[45]")
    assert [t.obs_id for t in collection_tasks(spec, fmt="dicom")] == ["mr_0004", "mr_0005"]
    assert [t.subject_id for t in plan_files("b", spec, fmt="dicom")] == ["4", "5"]  # documented: the wildcard's match


def test_validate_alignment_false_is_honoured(tmp_path: Path) -> None:
    """``validate_alignment=False`` stores subjects whose volumes differ in shape (the cohort runner
    checked them again and raised ``ImageReadError: misaligned``); on by default, it is an ``AlignmentError``."""
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), tmp_path / "a_t1.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 5), np.uint8), np.eye(4)), tmp_path / "a_seg.nii.gz")
    images = {"t1": {"a": str(tmp_path / "a_t1.nii.gz")}, "seg": {"a": str(tmp_path / "a_seg.nii.gz")}}
    from radiobject.errors import AlignmentError

    with pytest.raises(AlignmentError, match="shape"):
        RadiObject.from_niftis(tmp_path / "on", images)
    radi = RadiObject.from_niftis(tmp_path / "off", images, validate_alignment=False)
    assert radi.seg.loc["a"].shape == (4, 4, 5) and radi.t1.loc["a"].shape == (4, 4, 4)
