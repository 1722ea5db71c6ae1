"""RadiObject: subjects x collections, views contain only their subjects, filter, materialise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radiobject import AlignmentError, NotFoundError, RadiObject, StoreNotFoundError, WriteOptions
from radiobject.model.bulk import IngestItem
from tests.model.helpers import image, write_nifti_cohort

SUBJECTS = ["P-009", "P-002", "P-005", "P-001"]  # unsorted on purpose


@pytest.fixture
def cohort(backend: str, tmp_path):
    t1 = {s: image(k) for k, s in enumerate(SUBJECTS)}
    seg = {s: image(50 + k, dtype="uint8") for k, s in enumerate(SUBJECTS)}
    meta = pd.DataFrame({"obs_subject_id": SUBJECTS, "age": [70, 41, 55, 33], "site": ["A", "B", "A", "B"]})
    RadiObject.from_images(
        str(tmp_path / "radi"), {"T1w": t1, "seg": seg}, obs_meta=meta, options=WriteOptions(backend=backend)
    )
    return RadiObject(str(tmp_path / "radi")), t1, seg


def test_open_and_access(cohort, backend: str) -> None:
    radi, t1, _ = cohort
    assert radi.backend_name == backend
    assert radi.obs_subject_ids == SUBJECTS
    assert radi.collection_names == ["T1w", "seg"]
    assert radi.T1w.uri == radi["T1w"].uri
    assert isinstance(radi.obs_meta, pd.DataFrame) and list(radi.obs_meta["age"]) == [70, 41, 55, 33]
    for s in SUBJECTS:
        np.testing.assert_array_equal(radi.T1w.loc[s].to_numpy(), t1[s].array)
        np.testing.assert_array_equal(radi.T1w.by_subject(s).to_numpy(), t1[s].array)
    with pytest.raises(AttributeError):
        _ = radi.FLAIR
    with pytest.raises(NotFoundError):
        radi["FLAIR"]


def test_views_hold_only_their_subjects(cohort) -> None:
    radi, t1, seg = cohort
    train = radi.loc[["P-005", "P-009"]]
    assert train.obs_subject_ids == ["P-005", "P-009"]
    for name in ("T1w", "seg"):
        coll = train[name]
        assert coll.obs_subject_ids == ["P-005", "P-009"]
        assert len(coll) == 2 and len(list(coll)) == 2
    np.testing.assert_array_equal(train.T1w.iloc[0].to_numpy(), t1["P-005"].array)
    val = radi.iloc[[1, 3]]
    assert set(val.T1w.obs_subject_ids).isdisjoint(train.T1w.obs_subject_ids)
    assert radi.iloc[0].obs_subject_ids == ["P-009"]
    assert list(train.obs_meta["obs_subject_id"]) == ["P-005", "P-009"]
    with pytest.raises(NotFoundError):
        radi.loc[["P-404"]]
    with pytest.raises(NotFoundError):
        train.T1w.loc["P-002"]  # other subject: not in this view


def test_filter_without_eval(cohort) -> None:
    radi, _, _ = cohort
    assert radi.filter(site="A").obs_subject_ids == ["P-009", "P-005"]
    assert radi.filter(("age", ">", 50)).T1w.obs_subject_ids == ["P-009", "P-005"]
    assert radi.filter(("age", "<", 50), site="B").obs_subject_ids == ["P-002", "P-001"]
    assert radi.filter(("site", "in", ["B"])).filter(("age", ">=", 41)).obs_subject_ids == ["P-002"]
    assert radi.filter(lambda df: df["age"] % 2 == 1).obs_subject_ids == ["P-002", "P-005", "P-001"]
    with pytest.raises(KeyError, match="weight"):
        radi.filter(weight=3)
    with pytest.raises(ValueError, match="operator"):
        radi.filter(("age", "__import__('os')", 1))


def test_filter_strings_are_parsed_never_evaluated(cohort) -> None:
    radi, _, _ = cohort
    assert radi.filter("age > 50").obs_subject_ids == radi.filter(("age", ">", 50)).obs_subject_ids
    assert radi.filter("age < 50", "site == 'B'").obs_subject_ids == ["P-002", "P-001"]
    assert radi.filter(" age>=41 ").filter('site != "A"').obs_subject_ids == ["P-002"]
    for bad in ("age > 40 and site == 'A'", "__import__('os').system('true')", "age > limit", "age", "> 3"):
        with pytest.raises(TypeError, match="condition"):
            radi.filter(bad)
    with pytest.raises(TypeError, match="radi.loc"):
        radi.filter(["P-002", "P-001"])  # IDs are not a mask
    with pytest.raises(ValueError, match="mask of shape"):
        radi.filter(np.array([True, False]))


def test_materialise_view(cohort, tmp_path) -> None:
    radi, t1, seg = cohort
    view = radi.filter(site="B")
    out = view.to_radi_object(str(tmp_path / "sub"))
    out = RadiObject(str(tmp_path / "sub"))
    assert out.obs_subject_ids == ["P-002", "P-001"]
    assert out.T1w.obs_subject_ids == ["P-002", "P-001"] and out.seg.obs_subject_ids == ["P-002", "P-001"]
    for s in ("P-002", "P-001"):
        v = out.seg.loc[s]
        np.testing.assert_array_equal(v.to_numpy(), seg[s].array)
        assert v.dtype == np.uint8 and np.array_equal(v.affine, seg[s].affine)
    assert list(out.obs_meta["age"]) == [41, 33]


def test_append_subject_and_collection(cohort) -> None:
    radi, t1, _ = cohort
    new = image(77)
    radi.add_collection("T1w", [IngestItem("P-000", "P-000", new)])
    radi.add_subjects(pd.DataFrame({"obs_subject_id": ["P-000"], "age": [20], "site": ["C"]}))
    again = RadiObject(radi.uri)
    assert again.obs_subject_ids[-1] == "P-000"
    np.testing.assert_array_equal(again.T1w.loc["P-000"].to_numpy(), new.array)
    np.testing.assert_array_equal(again.T1w.loc["P-009"].to_numpy(), t1["P-009"].array)
    assert again.loc[["P-000"]].seg.obs_ids == []


def test_from_niftis_with_glob_subjects(backend: str, tmp_path) -> None:
    arrays = write_nifti_cohort(tmp_path / "raw", ["sub-03", "sub-01", "sub-02"])
    radi = RadiObject.from_niftis(
        str(tmp_path / "radi"),
        images={"T1w": str(tmp_path / "raw" / "*" / "t1.nii.gz"), "seg": str(tmp_path / "raw" / "*" / "seg.nii.gz")},
        options=WriteOptions(backend=backend),
    )
    assert sorted(radi.obs_subject_ids) == ["sub-01", "sub-02", "sub-03"]
    for s, arr in arrays.items():
        np.testing.assert_array_equal(radi.seg.loc[s].to_numpy(), arr["seg"])
        assert radi.seg.loc[s].dtype == np.uint8


def test_alignment_validation_rejects_before_writing(tmp_path) -> None:
    write_nifti_cohort(tmp_path / "raw", ["a", "b"], label_shape=(12, 14, 9))
    with pytest.raises(AlignmentError, match="shape") as info:
        RadiObject.from_niftis(
            str(tmp_path / "radi"),
            images={
                "T1w": str(tmp_path / "raw" / "*" / "t1.nii.gz"),
                "seg": str(tmp_path / "raw" / "*" / "seg.nii.gz"),
            },
        )
    assert "seg.nii.gz" in str(info.value)
    assert not (tmp_path / "radi").exists()


def test_open_missing_store(tmp_path) -> None:
    with pytest.raises(StoreNotFoundError, match="radiobject.json"):
        RadiObject(str(tmp_path / "nothing"))


def test_seed_spellings(cohort) -> None:
    """What users of radiobject 0.1 type: obs_meta.read(), loc / iloc by ID and position, axial_slice."""
    radi, t1, _ = cohort
    obs = radi.obs_meta.read()
    assert isinstance(obs, pd.DataFrame) and list(obs["obs_subject_id"]) == SUBJECTS
    assert list(radi.obs_meta.read(columns=["age"]).columns) == ["age"]
    chosen = obs[obs["site"] == "B"]["obs_subject_id"].tolist()
    assert chosen == ["P-002", "P-001"]
    vol = radi.loc["P-002"].T1w.iloc[0]
    np.testing.assert_array_equal(vol.to_numpy(), t1["P-002"].array)
    np.testing.assert_array_equal(vol.axial_slice(3), vol.axial(3))
    assert radi.iloc[3].obs_subject_ids == ["P-001"]
    assert type(radi.obs_meta[["age"]]) is pd.DataFrame and len(radi.T1w.obs.read()) == 4


def test_obs_meta_checked_before_any_write(tmp_path) -> None:
    bids = pd.DataFrame({"participant_id": ["a", "b"], "age": [1, 2]})  # BIDS spelling is accepted
    radi = RadiObject.from_images(str(tmp_path / "ok"), {"T1w": {"a": image(0), "b": image(1)}}, obs_meta=bids)
    assert list(radi.obs_meta["age"]) == [1, 2]
    with pytest.raises(ValueError, match="obs_subject_id"):
        RadiObject.from_images(str(tmp_path / "bad"), {"T1w": {"a": image(0)}}, obs_meta=pd.DataFrame({"x": [1]}))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(AlignmentError, match="twice"):
        RadiObject.from_images(
            str(tmp_path / "dup"), {"T1w": {"a": image(0)}}, obs_meta=pd.DataFrame({"obs_subject_id": ["a", "a"]})
        )
