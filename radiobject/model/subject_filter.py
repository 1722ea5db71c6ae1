"""Row filters over a subject table without ``eval``: equality, comparisons, membership, masks."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

Condition: TypeAlias = tuple[str, str, Any] | Callable[[pd.DataFrame], Any] | pd.Series | np.ndarray

_OPS: dict[str, Callable[[pd.Series, Any], pd.Series]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda s, v: s.isin(list(v)),
    "not in": lambda s, v: ~s.isin(list(v)),
    "isna": lambda s, v: s.isna() if v in (True, None) else s.notna(),
    "contains": lambda s, v: s.astype(str).str.contains(str(v), regex=False),
}


def filter_mask(df: pd.DataFrame, conditions: Iterable[Condition], equals: Mapping[str, Any]) -> np.ndarray:
    """A boolean mask over ``df`` rows meeting all conditions; ``KeyError`` names a missing column."""
    mask = np.ones(len(df), dtype=bool)
    for col, value in equals.items():
        mask &= _column(df, col).eq(value).to_numpy()
    for cond in conditions:
        if isinstance(cond, tuple):
            col, op, value = cond
            if op not in _OPS:
                raise ValueError(f"unknown operator {op!r}; use one of {', '.join(_OPS)}")
            mask &= _OPS[op](_column(df, col), value).fillna(False).to_numpy(dtype=bool)
        elif callable(cond):
            mask &= np.asarray(cond(df), dtype=bool)
        else:
            arr = np.asarray(cond, dtype=bool)
            if arr.shape != (len(df),):
                raise ValueError(f"mask of shape {arr.shape} for {len(df)} subjects")
            mask &= arr
    return mask


def _column(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        raise KeyError(f"obs_meta has no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    return df[col]
