"""Parquet fragment tables: append is one new fragment, reads merge in commit order."""

from __future__ import annotations

import pandas as pd

from radiobject.storage.tables import FragmentTable


def test_append_read_compact(tmp_path) -> None:
    t = FragmentTable(str(tmp_path / "obs"), "obs_id")
    assert t.read().empty
    t.append(pd.DataFrame({"obs_id": ["b", "a"], "x": [1, 2], "shape": [[1, 2, 3], [4, 5, 6]]}))
    t.append(pd.DataFrame({"obs_id": ["c"], "x": [3], "shape": [[7, 8, 9]], "extra": ["new"]}))
    assert len(t.fragments()) == 2
    df = t.read()
    assert list(df["obs_id"]) == ["b", "a", "c"] and list(df["shape"].iloc[2]) == [7, 8, 9]
    assert pd.isna(df["extra"].iloc[0]) and df["extra"].iloc[2] == "new"
    t.append(pd.DataFrame({"obs_id": ["a"], "x": [20], "shape": [[4, 5, 6]]}))  # update: last wins
    assert t.read().set_index("obs_id").loc["a", "x"] == 20
    t.compact()
    assert len(t.fragments()) == 1
    assert list(t.read()["obs_id"]) == ["b", "a", "c"] and t.read().set_index("obs_id").loc["a", "x"] == 20


def test_no_partial_fragment_visible(tmp_path) -> None:
    t = FragmentTable(str(tmp_path / "obs"), "obs_id")
    (tmp_path / "obs").mkdir()
    (tmp_path / "obs" / "part-0001.parquet.tmp-deadbeef").write_bytes(b"half a file")  # a crashed writer
    t.append(pd.DataFrame({"obs_id": ["a"]}))
    assert list(t.read()["obs_id"]) == ["a"]
