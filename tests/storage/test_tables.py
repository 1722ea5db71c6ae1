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


def _append_and_compact(uri: str, rounds: int, started, queue) -> None:  # a spawned writer
    try:
        t = FragmentTable(uri, "obs_id")
        started.set()
        for k in range(rounds):
            t.append(pd.DataFrame({"obs_id": [f"k{k}"], "x": [k]}))
            t.append(pd.DataFrame({"obs_id": ["base"], "x": [k]}))  # an update
            if k % 2:
                t.compact()
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"ERROR {type(exc).__name__}: {exc}")


def test_readers_never_miss_a_fragment_while_a_writer_appends_and_compacts(tmp_path) -> None:
    import multiprocessing as mp

    uri = str(tmp_path / "obs")
    FragmentTable(uri, "obs_id").append(pd.DataFrame({"obs_id": ["base"], "x": [-1]}))
    ctx = mp.get_context("spawn")
    started, queue = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_append_and_compact, args=(uri, 150, started, queue))
    proc.start()
    assert started.wait(60)
    opens, last = 0, -1
    while proc.is_alive() or opens == 0:
        df = FragmentTable(uri, "obs_id").read()  # a fresh open: listing + every fragment
        ids = df["obs_id"].tolist()
        assert len(ids) == len(set(ids)) and ids[0] == "base"
        n = len(ids) - 1  # k0 .. k(n-1), complete and in order: a prefix of the writer's appends
        assert ids[1:] == [f"k{k}" for k in range(n)] and n >= last, (ids, FragmentTable(uri, "obs_id").fragments())
        last, opens = n, opens + 1
    proc.join(30)
    assert queue.get(timeout=10) == "ok" and proc.exitcode == 0
    assert opens > 20
    assert FragmentTable(uri, "obs_id").read()["obs_id"].tolist() == ["base"] + [f"k{k}" for k in range(150)]
