"""VolumeCollection: identity by obs_id (unsorted ingest, append, views), ids, bulk writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radiobject import InvalidIdError, NotFoundError, RadiObjectError, Volume, VolumeCollection, WriteOptions
from radiobject.model.bulk import IngestItem
from tests.model.helpers import image


def test_unsorted_ingest_and_append_keep_identity(backend: str, tmp_path) -> None:
    ids = ["zeta", "alpha", "mu", "beta"]  # deliberately unsorted
    imgs = {sid: image(k) for k, sid in enumerate(ids)}
    coll = VolumeCollection.from_images(
        str(tmp_path / "c"), imgs, options=WriteOptions(backend=backend, workers=2, commit_every=1)
    )
    coll = VolumeCollection(str(tmp_path / "c"))
    assert coll.obs_ids == ids  # input order kept, whatever order the threads finished in
    for k, sid in enumerate(ids):
        np.testing.assert_array_equal(coll.loc[sid].to_numpy(), imgs[sid].array)
        np.testing.assert_array_equal(coll.iloc[k].to_numpy(), imgs[sid].array)
    extra = image(99)
    coll.append(extra, "aardvark", "subj-x", site="B")
    reopened = VolumeCollection(str(tmp_path / "c"))
    assert reopened.obs_ids == ids + ["aardvark"]
    np.testing.assert_array_equal(reopened.loc["aardvark"].to_numpy(), extra.array)
    np.testing.assert_array_equal(reopened.loc["zeta"].to_numpy(), imgs["zeta"].array)
    assert reopened.obs.set_index("obs_id").loc["aardvark", "site"] == "B"
    assert reopened.by_subject("subj-x").obs_id == "aardvark"


def test_views(backend: str, tmp_path) -> None:
    imgs = {f"s{k}": image(k) for k in range(5)}
    coll = VolumeCollection.from_images(str(tmp_path / "c"), imgs, options=WriteOptions(backend=backend))
    view = coll.iloc[1:4]
    assert view.is_view and len(view) == 3 and view.obs_ids == ["s1", "s2", "s3"]
    sub = coll.loc[["s4", "s0"]]
    assert sub.obs_ids == ["s4", "s0"]
    np.testing.assert_array_equal(sub.iloc[0].to_numpy(), imgs["s4"].array)
    assert [v.obs_id for v in sub] == ["s4", "s0"]
    assert list(sub.obs["obs_id"]) == ["s4", "s0"]
    mask = coll.iloc[np.array([True, False, True, False, False])]
    assert mask.obs_ids == ["s0", "s2"]
    with pytest.raises(NotFoundError, match="nope"):
        coll.loc["nope"]
    with pytest.raises(NotFoundError):
        sub.loc["s1"]  # in the collection, not in the view
    copy = sub.to_collection(str(tmp_path / "copy"))
    assert copy.obs_ids == ["s4", "s0"]
    np.testing.assert_array_equal(copy.loc["s0"].to_numpy(), imgs["s0"].array)
    assert np.array_equal(copy.loc["s0"].affine, imgs["s0"].affine)


def test_obs_table_columns(tmp_path) -> None:
    imgs = {"a": image(0, (5, 6, 7)), "b": image(1, (8, 6, 7), dtype="float32")}
    obs = pd.DataFrame({"obs_id": ["a", "b"], "scanner": ["X", "Y"]})
    coll = VolumeCollection.from_images(str(tmp_path / "c"), imgs, subject_ids={"a": "S1", "b": "S2"}, obs=obs)
    df = coll.obs.set_index("obs_id")
    assert list(df.loc["b", "shape"]) == [8, 6, 7] and df.loc["b", "dtype"] == "float32"
    assert list(df.loc["a", "spacing"]) == [1.0, 1.5, 2.0]
    assert df.loc["a", "obs_subject_id"] == "S1" and df.loc["b", "scanner"] == "Y"
    assert df.loc["a", "source"] == "synthetic-0"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".", "..", "x\x00y", "x" * 201, " lead"])
def test_unsafe_ids_rejected(tmp_path, bad: str) -> None:
    with pytest.raises(InvalidIdError):
        VolumeCollection.from_images(str(tmp_path / "c"), {bad: image(0)})


def test_unsafe_collection_name_rejected(tmp_path) -> None:
    with pytest.raises(InvalidIdError, match="collection name"):
        VolumeCollection.create(str(tmp_path / "c"), name="../evil")


def test_duplicate_and_failed_items(tmp_path) -> None:
    coll = VolumeCollection.create(str(tmp_path / "c"))
    coll.write([IngestItem("a", "a", image(0))])
    with pytest.raises(RadiObjectError, match="already exists"):
        coll.write([IngestItem("a", "a", image(1))])

    def boom() -> None:
        raise OSError("disk on fire")

    report = coll.write(
        [IngestItem("b", "b", image(2)), IngestItem("c", "c", boom), IngestItem("a", "a", image(3))],
        on_error="collect",
        skip_existing=True,
    )
    assert {r.obs_id: r.status for r in report.results} == {"a": "present", "b": "written", "c": "failed"}
    assert "disk on fire" in report.failed[0].error
    assert VolumeCollection(str(tmp_path / "c")).obs_ids == ["a", "b"]  # the failed one is invisible


def test_from_volumes_and_niftis(tmp_path) -> None:
    from tests.model.helpers import write_nifti_cohort

    arrays = write_nifti_cohort(tmp_path / "raw", ["sub-02", "sub-01"])
    coll = VolumeCollection.from_niftis(str(tmp_path / "t1"), str(tmp_path / "raw" / "*" / "t1.nii.gz"))
    assert sorted(coll.obs_ids) == ["sub-01", "sub-02"]
    np.testing.assert_array_equal(coll.loc["sub-02"].to_numpy(), arrays["sub-02"]["t1"])
    v = Volume.from_numpy(str(tmp_path / "single"), arrays["sub-01"]["seg"], obs_id="lab1")
    copied = VolumeCollection.from_volumes(str(tmp_path / "vols"), [v])
    np.testing.assert_array_equal(copied.loc["lab1"].to_numpy(), arrays["sub-01"]["seg"])
