"""``.loc`` / ``.iloc`` accessors shared by collections and RadiObjects (label vs position)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")
V = TypeVar("V")


def positions(key: Any, n: int) -> list[int] | int:
    """Positions selected by an int, a slice, a list of ints or a boolean mask over ``n`` items."""
    if isinstance(key, (int, np.integer)):
        i = int(key) + n if key < 0 else int(key)
        if not 0 <= i < n:
            raise IndexError(f"position {key} out of range for {n} items")
        return i
    if isinstance(key, slice):
        return list(range(n)[key])  # a range slice: O(selected), not O(n)
    arr = np.asarray(key)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"boolean mask of length {arr.shape} for {n} items")
        return [int(i) for i in np.flatnonzero(arr)]
    # the ignore below: one int key gives one int (positions() returns int | list)
    return [int(positions(int(k), n)) for k in arr.ravel()]  # type: ignore[arg-type]


class Indexer(Generic[T, V]):
    """``obj.loc[...]`` / ``obj.iloc[...]``: one key -> ``one(key)``; many -> ``many(keys)``."""

    def __init__(self, one: Callable[[Any], T], many: Callable[[Sequence[Any]], V], normalise: Callable[[Any], Any]):
        self._one, self._many, self._normalise = one, many, normalise

    def __getitem__(self, key: Any) -> T | V:
        sel = self._normalise(key)
        if isinstance(sel, list):
            return self._many(sel)
        return self._one(sel)


class PositionMap:
    """IDs in order plus a hash map ``id -> position``, built once; lookups cost O(1).

    Built once per opened table (or per view) and reused by every ``loc`` / ``iloc`` / ``select``
    call, so their cost does not grow with the number of subjects. With a repeated ID the first
    position wins.
    """

    __slots__ = ("ids", "pos", "source")

    def __init__(self, ids: Sequence[str], source: object = None) -> None:
        self.ids: tuple[str, ...] = tuple(ids)
        self.pos: dict[str, int] = {}
        for i, k in enumerate(self.ids):
            self.pos.setdefault(k, i)
        self.source = source  # what the map was built from (rebuilt when that object changes)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, key: object) -> bool:
        return key in self.pos

    def position(self, key: str) -> int | None:
        """Position of ``key``, or ``None`` when absent."""
        return self.pos.get(key)


def single_chunk(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every Arrow-backed column in one chunk (same dtypes, same values).

    A table read from several Parquet fragments has multi-chunk Arrow columns, and a positional
    take (``df.iloc[[i, j]]``) on those concatenates the whole column on every call; on one chunk it
    costs O(rows taken). Returns ``df`` itself when nothing needs combining.
    """
    cols = {}
    for name in df.columns:
        arr = df[name].array
        chunked = getattr(arr, "_pa_array", None)
        if getattr(chunked, "num_chunks", 1) > 1:
            cols[name] = pd.Series(arr.take(np.arange(len(arr))), index=df.index, name=name)
    return df.assign(**cols) if cols else df
