"""Catalog lookups cost the same at 1k and 30k subjects: counted work, not timed.

Per call, two deterministic measures are taken after a warm-up call (which builds the lookup
maps once): the number of Python and C function calls the interpreter makes (``sys.setprofile``)
and the peak memory allocated (``tracemalloc``). A per-call full-table scan, copy, re-index or
``tolist`` shows up in at least one of them as growth with the table size; timing noise cannot.
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from radiobject import ImageData, RadiObject
from radiobject.model.indexing import PositionMap, positions
from radiobject.storage import files
from radiobject.storage.tables import FragmentTable

SMALL, LARGE = 1_000, 30_000


def _sid(i: int) -> str:
    return f"sub-{i:06d}"


def _store(root: str, n: int) -> RadiObject:
    """A store with ``n`` subjects: 2 real volumes, the other catalog rows copies of a real row."""
    imgs = {_sid(i): ImageData(np.full((4, 4, 4), i, np.int16), np.eye(4), {}, "synthetic") for i in range(2)}
    RadiObject.from_images(root, {"T1w": imgs})
    table = FragmentTable(files.join(root, "collections", "T1w", "obs"), "obs_id")
    row = table.read().iloc[0].to_dict()
    table.append(pd.DataFrame([{**row, "obs_id": _sid(i), "obs_subject_id": _sid(i)} for i in range(2, n)]))
    RadiObject(root).add_subjects(
        pd.DataFrame({"obs_subject_id": [_sid(i) for i in range(2, n)], "age": np.arange(2, n) % 90})
    )
    return RadiObject(root)


def _work(fn: Callable[[], object]) -> tuple[int, int]:
    """(function calls made, peak bytes allocated) by one call of ``fn``."""
    fn()  # warm-up: builds the maps once
    calls = 0

    def prof(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    tracemalloc.start()
    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return calls, peak


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[int, RadiObject]:
    base = tmp_path_factory.mktemp("catalog")
    return {n: _store(str(base / f"r{n}"), n) for n in (SMALL, LARGE)}


OPS: dict[str, Callable[[RadiObject, int], object]] = {
    "loc": lambda r, n: r.loc[_sid(n // 2)],
    "loc_list": lambda r, n: r.loc[[_sid(3), _sid(n - 1)]],
    "iloc": lambda r, n: r.iloc[n // 2],
    "iloc_slice": lambda r, n: r.iloc[n - 10 : n - 5],
    "view_collection": lambda r, n: r.loc[_sid(n // 2)].T1w,
    "view_volume": lambda r, n: r.loc[_sid(1)].T1w.iloc[0],
    "view_obs_meta": lambda r, n: r.iloc[[1, n - 1]].obs_meta,
    "view_filter": lambda r, n: r.iloc[[1, 5, n - 1]].filter(("age", ">", 3)),
    "collection_loc": lambda r, n: r.T1w.loc[_sid(n // 3)],
    "collection_iloc": lambda r, n: r.T1w.iloc[n // 3],
    "collection_by_subject": lambda r, n: r.T1w.by_subject(_sid(n // 3)),
    "collection_select_subjects": lambda r, n: r.T1w.select_subjects([_sid(n // 3), _sid(7)]),
    "view_contains": lambda r, n: _sid(n // 2) in r.T1w.select_subjects([_sid(n // 2)]),
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_lookup_work_does_not_grow_with_the_cohort(stores, op: str) -> None:
    fn = OPS[op]
    small_calls, small_peak = _work(lambda: fn(stores[SMALL], SMALL))
    large_calls, large_peak = _work(lambda: fn(stores[LARGE], LARGE))
    # 30x more subjects; an O(n) step would add >= 29k calls or >= 29k * 8 bytes
    assert large_calls <= small_calls * 1.1 + 20, (op, small_calls, large_calls)
    assert large_peak <= small_peak * 1.2 + 16_384, (op, small_peak, large_peak)


def test_lookups_return_the_right_subjects(stores) -> None:
    r = stores[LARGE]
    assert r.loc[_sid(123)].obs_subject_ids == [_sid(123)]
    assert r.iloc[-1].obs_subject_ids == [_sid(LARGE - 1)]
    assert r.iloc[10:13].obs_subject_ids == [_sid(10), _sid(11), _sid(12)]
    view = r.loc[[_sid(9), _sid(4)]]
    assert view.obs_meta["obs_subject_id"].tolist() == [_sid(9), _sid(4)]
    assert view.obs_meta["age"].tolist() == [9, 4]
    assert view.T1w.obs_ids == [_sid(9), _sid(4)]
    np.testing.assert_array_equal(r.loc[_sid(1)].T1w.iloc[0].to_numpy(), np.full((4, 4, 4), 1, np.int16))
    assert r.T1w.by_subject(_sid(0)).obs_id == _sid(0)
    assert view.filter(("age", ">", 5)).obs_subject_ids == [_sid(9)]


def test_position_map_and_positions() -> None:
    m = PositionMap(["b", "a", "b"])
    assert m.position("b") == 0 and m.position("a") == 1 and m.position("z") is None
    assert "a" in m and len(m) == 3
    assert positions(slice(2, 5), 10) == [2, 3, 4]
    assert positions(slice(None, None, -3), 7) == [6, 3, 0]
    assert positions(-1, 4) == 3
    with pytest.raises(IndexError):
        positions(4, 4)


def test_tables_from_several_fragments_are_combined_once(stores) -> None:
    """Arrow columns split over fragments make every positional take concatenate the column."""
    r = stores[LARGE]
    r.iloc[[1, 2]].obs_meta  # noqa: B018 - builds the maps
    r.T1w.select_subjects([_sid(1)]).obs  # noqa: B018 - builds the maps
    for df in (r._full_obs_meta(), r.T1w._state.obs):
        for name in df.columns:
            chunked = getattr(df[name].array, "_pa_array", None)
            assert getattr(chunked, "num_chunks", 1) == 1, name
