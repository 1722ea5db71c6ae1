"""k-fold / stratified / grouped splits, stored in obs_meta."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiobject import ImageData
from radiobject.model.radi_object import RadiObject
from radiobject.model.splits import fold_sizes, make_splits, split_store


def _meta(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {"obs_subject_id": [f"s{i:02d}" for i in range(n)], "site": ["A" if i % 4 else "B" for i in range(n)]}
    )


def test_kfold_stratified() -> None:
    meta = _meta()
    sp = make_splits(meta, k=5, stratify="site", seed=3)
    assert fold_sizes(sp) == {f: 4 for f in range(5)}
    both = sp.merge(meta, on="obs_subject_id")
    assert (both.groupby("fold")["site"].apply(lambda s: (s == "B").sum()) == 1).all()  # 5 B subjects, one per fold
    assert set(sp.loc[sp["fold"] == 0, "obs_subject_id"]) == set(sp.loc[sp["split"] == "val", "obs_subject_id"])
    assert make_splits(meta, k=5, stratify="site", seed=3).equals(sp)
    assert not make_splits(meta, k=5, stratify="site", seed=4).equals(sp)


def test_groups_do_not_leak() -> None:
    rows = [
        {"obs_subject_id": f"sub-{p:02d}_ses-{s}", "participant_id": f"sub-{p:02d}"}
        for p in range(9)
        for s in range(1 + p % 3)
    ]
    meta = pd.DataFrame(rows)
    sp = make_splits(meta, k=3, seed=0).merge(meta, on="obs_subject_id")
    assert (sp.groupby("participant_id")["fold"].nunique() == 1).all()
    hold = make_splits(meta, k=None, val_fraction=0.3, seed=0).merge(meta, on="obs_subject_id")
    assert (hold.groupby("participant_id")["split"].nunique() == 1).all() and set(hold["split"]) == {"train", "val"}


def test_errors() -> None:
    with pytest.raises(ValueError, match="cannot fill"):
        make_splits(_meta(3), k=5)
    with pytest.raises(ValueError, match="not in obs_meta"):
        make_splits(_meta(), stratify="grade")
    with pytest.raises(ValueError, match="not both"):
        make_splits(_meta(), k=5, val_fraction=0.2)


def test_stored_in_obs_meta(tmp_path: Path) -> None:
    imgs = {f"s{i:02d}": ImageData(np.full((2, 2, 2), i, np.int16), np.eye(4)) for i in range(6)}
    meta = pd.DataFrame({"obs_subject_id": list(imgs), "grade": [1, 2, 1, 2, 1, 2]})
    radi = RadiObject.from_images(str(tmp_path / "st"), {"img": imgs}, obs_meta=meta)
    sp = split_store(radi, k=3, stratify="grade")
    got = RadiObject(radi.uri).obs_meta.set_index("obs_subject_id")
    assert got["fold"].to_dict() == sp.set_index("obs_subject_id")["fold"].to_dict()
    assert got["grade"].tolist() == [1, 2, 1, 2, 1, 2] and set(got["split"]) == {"train", "val"}
    split_store(RadiObject(radi.uri), k=2, seed=1)  # re-splitting replaces the columns
    assert set(RadiObject(radi.uri).obs_meta["fold"]) == {0, 1}


def test_fold_column_stays_integer(tmp_path: Path) -> None:
    imgs = {f"s{i}": ImageData(np.zeros((2, 2, 2), np.int16), np.eye(4)) for i in range(4)}
    radi = RadiObject.from_images(str(tmp_path / "st"), {"img": imgs})
    split_store(radi, k=2)
    meta = RadiObject(radi.uri).obs_meta
    assert meta["fold"].dtype == np.int64 and sorted(meta["fold"]) == [0, 0, 1, 1]


def test_val_fraction_after_kfold_drops_the_stale_fold(tmp_path: Path) -> None:
    imgs = {f"s{i}": ImageData(np.zeros((2, 2, 2), np.int16), np.eye(4)) for i in range(6)}
    meta = pd.DataFrame({"obs_subject_id": list(imgs), "site": list("AABBCC")})
    radi = RadiObject.from_images(str(tmp_path / "st"), {"img": imgs}, obs_meta=meta)
    split_store(radi, k=3)
    assert "fold" in RadiObject(radi.uri).obs_meta.columns
    sp = split_store(RadiObject(radi.uri), k=None, val_fraction=0.5)
    got = RadiObject(radi.uri).obs_meta
    assert "fold" not in got.columns  # not a column of NaN next to a split made without folds
    assert got.set_index("obs_subject_id")["split"].to_dict() == sp.set_index("obs_subject_id")["split"].to_dict()
    assert got["site"].tolist() == list("AABBCC") and len(got) == 6
    split_store(RadiObject(radi.uri), k=2)  # and k-fold again afterwards
    again = RadiObject(radi.uri).obs_meta
    assert again["fold"].dtype == np.int64 and sorted(again["fold"]) == [0, 0, 0, 1, 1, 1]


def test_drop_subject_columns(tmp_path: Path) -> None:
    imgs = {f"s{i}": ImageData(np.zeros((2, 2, 2), np.int16), np.eye(4)) for i in range(3)}
    meta = pd.DataFrame({"obs_subject_id": list(imgs), "a": [1, 2, 3], "b": ["x", "y", "z"]})
    radi = RadiObject.from_images(str(tmp_path / "st"), {"img": imgs}, obs_meta=meta)
    radi.delete_subject("s1")
    radi.drop_subject_columns(["a", "not-there"])
    got = RadiObject(radi.uri).obs_meta
    assert list(got.columns) == ["obs_subject_id", "b"] and got["obs_subject_id"].tolist() == ["s0", "s2"]
    with pytest.raises(ValueError, match="key"):
        radi.drop_subject_columns(["obs_subject_id"])
