"""pandas habits on a store: label slices in ``loc``, ``keys()``, masks, callables, iteration."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_loc_label_slice_and_keys(sample_store: Path) -> None:
    from radiobject import RadiObject
    from radiobject.errors import NotFoundError

    radi = RadiObject(str(sample_store))
    ids = radi.obs_subject_ids
    assert radi.loc[ids[1] : ids[2]].obs_subject_ids == ids[1:3]  # both ends included, as in pandas
    assert radi.loc[: ids[1]].obs_subject_ids == ids[:2]
    assert radi.loc[ids[2] :].obs_subject_ids == ids[2:]
    with pytest.raises(NotFoundError, match="sub-99"):
        radi.loc[ids[0] : "sub-99"]
    assert radi.keys() == list(radi) == radi.collection_names
    mask = radi.obs_meta["age"] > radi.obs_meta["age"].median()
    assert radi.loc[mask].obs_subject_ids == radi.obs_meta.loc[mask, "obs_subject_id"].tolist()
    assert len(radi.loc[lambda m: m["age"] > -1]) == len(radi)
    assert [name for name, _ in radi.items()] == list(radi)
