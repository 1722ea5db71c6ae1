"""Running an ingest: bad items reported with their reason and the rest stored; re-runs are no-ops."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from radiobject import RadiObject, WriteOptions
from radiobject.ingest import make_sample_cohort, plan_from_dicom_root, plan_from_globs, plan_from_manifest, run_ingest
from radiobject.ingest.cohort import MARKER
from radiobject.ingest.sample import SampleCohort
from radiobject.storage.tables import FragmentTable
from tests.conftest import data_path


def _broken_manifest(cohort: SampleCohort) -> pd.DataFrame:
    """The sample manifest plus one of each kind of bad input."""
    root = cohort.folder
    df = pd.read_csv(cohort.manifest, dtype=str)
    # unreadable: truncated gzip
    t1 = root / "sub-02/anat/sub-02_T1w.nii.gz"
    t1.write_bytes(t1.read_bytes()[:200])
    # wrong format: a text file named .nii.gz
    (root / "sub-03/anat/sub-03_FLAIR.nii.gz").write_text("this is not an image\n" * 20)
    # mismatched shapes between image and label
    seg = nib.load(str(root / "sub-04/anat/sub-04_seg.nii.gz"))
    nib.save(
        nib.Nifti1Image(np.asarray(seg.dataobj)[:, :, :-2], seg.affine), str(root / "sub-04/anat/sub-04_seg.nii.gz")
    )
    extra = pd.DataFrame(
        {
            "subject_id": ["sub-05"],
            "collection": ["T1w"],
            "path": ["sub-05/anat/missing.nii.gz"],  # missing (a duplicate row is a DuplicateIdError: test_manifest)
            "session": ["ses-01"],
        }
    )
    return pd.concat([df, extra], ignore_index=True)


def test_bad_items_reported_rest_ingested(cohort: SampleCohort, tmp_path: Path, backend: str) -> None:
    plan = plan_from_manifest(_broken_manifest(cohort), subjects=cohort.participants, base_dir=cohort.folder)
    uri = str(tmp_path / "store")
    rep = run_ingest(uri, plan, options=WriteOptions(backend=backend), validate_alignment=True)
    failed = {(r["collection"], r["obs_subject_id"]): r["error"] for r in rep.failed}
    assert "does not exist" in failed[("T1w", "sub-05")]
    assert "wrong format" in failed[("FLAIR", "sub-03")]
    assert "misaligned: shape" in failed[("T1w", "sub-04")] and ("seg", "sub-04") in failed
    assert ("T1w", "sub-02") in failed  # truncated gzip: the header cannot be read
    # 12 good rows minus 5 bad ones, plus the missing file
    assert not rep.ok and rep.count("written") == 7 and len(rep.failed) == 6
    radi = RadiObject(uri)
    assert radi.backend_name == backend
    assert radi["T1w"].obs_subject_ids == ["sub-01", "sub-03"]
    assert sorted(radi.obs_subject_ids) == ["sub-01", "sub-02", "sub-03"]  # every subject with a stored volume
    assert radi.obs_meta.set_index("obs_subject_id").loc["sub-01", "site"] in ("A", "B")
    marker = json.loads(Path(uri, MARKER).read_text())
    assert marker["complete"] is False and marker["counts"]["failed"] == len(rep.failed)
    text = rep.summary_table()
    assert "failed" in text and "misaligned" in text
    d = rep.to_dict()
    assert d["counts"]["written"] == rep.count("written") and json.dumps(d)


def test_unreadable_at_write_time_is_collected(cohort: SampleCohort, tmp_path: Path) -> None:
    """Without --validate-alignment the truncated file is found when it is read, not before."""
    t1 = cohort.folder / "sub-02/anat/sub-02_T1w.nii.gz"
    t1.write_bytes(t1.read_bytes()[:400])
    rep = run_ingest(str(tmp_path / "s"), plan_from_globs({"T1w": cohort.glob("T1w")}))
    (bad,) = rep.failed
    assert bad["obs_id"] == "sub-02" and bad["source"].endswith("sub-02_T1w.nii.gz") and bad["error"]
    assert RadiObject(str(tmp_path / "s"))["T1w"].obs_subject_ids == ["sub-01", "sub-03", "sub-04"]


def test_rerun_is_idempotent_and_resumes(cohort: SampleCohort, tmp_path: Path) -> None:
    uri = str(tmp_path / "s")
    plan = plan_from_manifest(cohort.manifest, subjects=cohort.participants)
    first = run_ingest(uri, plan)
    assert first.ok and first.count("written") == 12 and first.subjects_added == 4
    frags = {n: FragmentTable(os.path.join(uri, "collections", n, "obs"), "obs_id").fragments() for n in ("T1w", "seg")}
    again = run_ingest(uri, plan_from_manifest(cohort.manifest, subjects=cohort.participants))
    assert again.ok and again.count("present") == 12 and again.count("written") == 0 and again.subjects_added == 0
    assert frags == {n: FragmentTable(os.path.join(uri, "collections", n, "obs"), "obs_id").fragments() for n in frags}
    assert len(FragmentTable(os.path.join(uri, "obs_meta"), "obs_subject_id").fragments()) == 1
    # a new subject later: only it is written
    more = make_sample_cohort(tmp_path / "more", 5, (16, 18, 12))
    rep = run_ingest(uri, plan_from_manifest(more.manifest))
    assert rep.count("written") == 3 and rep.count("present") == 12
    assert RadiObject(uri).obs_subject_ids[-1] == "sub-05"


def test_fail_fast(cohort: SampleCohort, tmp_path: Path) -> None:
    plan = plan_from_manifest(_broken_manifest(cohort), base_dir=cohort.folder)
    rep = run_ingest(str(tmp_path / "s"), plan, fail_fast=True)
    assert rep.aborted and not rep.ok and not (tmp_path / "s").exists()
    # a failure at write time stops the run after committing what was complete
    t1 = cohort.folder / "sub-02/anat/sub-02_T1w.nii.gz"
    rep = run_ingest(
        str(tmp_path / "s2"),
        plan_from_globs({"T1w": cohort.glob("T1w")}),
        fail_fast=True,
        options=WriteOptions(workers=1, commit_every=1),
    )
    assert t1.stat().st_size < 1000 and rep.aborted and not rep.ok


def test_canonical(tmp_path: Path) -> None:
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    aff = np.diag([-1.0, -1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(arr, aff), str(tmp_path / "a.nii.gz"))
    rep = run_ingest(str(tmp_path / "s"), plan_from_globs({"img": str(tmp_path / "*.nii.gz")}), canonical=True)
    assert rep.ok
    vol = RadiObject(str(tmp_path / "s"))["img"].by_subject("a")
    assert vol.orientation == "RAS" and np.array_equal(vol.to_numpy(), arr[::-1, ::-1])


def test_process_executor_matches_threads(cohort: SampleCohort, tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_ingest(a, plan_from_manifest(cohort.manifest))
    rep = run_ingest(b, plan_from_manifest(cohort.manifest), executor="process", options=WriteOptions(workers=2))
    assert rep.ok and rep.count("written") == 12
    ra, rb = RadiObject(a), RadiObject(b)
    for name in ra.collection_names:
        pd.testing.assert_frame_equal(ra[name].obs.drop(columns="version"), rb[name].obs.drop(columns="version"))
        for oid in ra[name].obs_ids:
            assert np.array_equal(ra[name].volume(oid).to_numpy(), rb[name].volume(oid).to_numpy())


def test_tiff_ingest(tmp_path: Path) -> None:
    import tifffile

    data = np.random.default_rng(0).integers(0, 1000, (4, 10, 12), dtype=np.uint16)
    for s in ("x1", "x2"):
        tifffile.imwrite(tmp_path / f"{s}.tif", data, photometric="minisblack")
    rep = run_ingest(str(tmp_path / "s"), plan_from_globs({"micro": str(tmp_path / "*.tif")}))
    assert rep.ok
    vol = RadiObject(str(tmp_path / "s"))["micro"].by_subject("x2")
    assert np.array_equal(vol.to_numpy(), data.transpose(2, 1, 0))


def test_dicom_root_ingest(tmp_path: Path, backend: str) -> None:
    from radiobject.formats.dicom import read_dicom_series

    src = data_path("dicom", "dicom2nifti", "anatomical")
    root = tmp_path / "dicom"
    root.mkdir()
    shutil.copytree(src / "001", root / "subjA" / "study" / "series1")
    os.symlink(src / "001_implicit", root / "subjB")
    rep = run_ingest(str(tmp_path / "s"), plan_from_dicom_root(root), options=WriteOptions(backend=backend))
    assert rep.ok, rep.summary_table()
    radi = RadiObject(str(tmp_path / "s"))
    (name,) = radi.collection_names
    ref = read_dicom_series(src / "001")
    vol = radi[name].by_subject("subjA")
    assert np.array_equal(vol.to_numpy(), np.asarray(ref.array)) and np.allclose(vol.affine, ref.affine)
    assert radi[name].obs["modality"].tolist() == ["MR", "MR"]


def test_rerun_updates_changed_subject_metadata(cohort: SampleCohort, tmp_path: Path) -> None:
    uri = str(tmp_path / "s")
    run_ingest(uri, plan_from_manifest(cohort.manifest, subjects=cohort.participants))
    parts = pd.read_csv(cohort.participants, dtype={"participant_id": str})
    parts.loc[parts.participant_id == "sub-03", "age"] = 99
    parts.to_csv(cohort.participants, index=False)
    rep = run_ingest(uri, plan_from_manifest(cohort.manifest, subjects=cohort.participants))
    assert rep.subjects_added == 1 and rep.count("present") == 12
    meta = RadiObject(uri).obs_meta.set_index("obs_subject_id")
    assert meta.loc["sub-03", "age"] == 99 and len(meta) == 4
