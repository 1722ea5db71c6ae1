"""``for x in radi``, ``"T1w" in radi``, ``radi.items()`` and ``radi.loc[bool mask]`` as in pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiobject import ImageData
from radiobject.model.radi_object import RadiObject


def test_iteration_and_mask(tmp_path: Path) -> None:
    imgs = {f"s{i}": ImageData(np.full((2, 2, 2), i, np.int16), np.eye(4)) for i in range(4)}
    meta = pd.DataFrame({"obs_subject_id": list(imgs), "age": [20, 60, 40, 70]})
    radi = RadiObject.from_images(str(tmp_path / "st"), {"T1w": imgs, "seg": imgs}, obs_meta=meta)
    assert list(radi) == radi.collection_names and set(radi) == {"T1w", "seg"}
    assert "T1w" in radi and "nope" not in radi and len(radi) == 4  # len counts subjects (rows)
    assert [n for n, c in radi.items()] == list(radi) and all(len(c) == 4 for _, c in radi.items())
    old = radi.loc[radi.obs_meta["age"] > 50]
    assert old.obs_subject_ids == ["s1", "s3"] and old.T1w.obs_subject_ids == ["s1", "s3"]
    assert radi.loc[lambda m: m["age"] < 30].obs_subject_ids == ["s0"]
    view = radi.loc[["s2", "s0"]]
    sub = view.loc[(view.obs_meta["age"] > 30).to_numpy()]  # a mask over a view's own rows
    assert sub.obs_subject_ids == ["s2"]
    with pytest.raises(IndexError, match="mask"):
        radi.loc[np.array([True, False])]
