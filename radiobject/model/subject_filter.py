"""Row filters over a subject table without ``eval``: equality, comparisons, membership, masks, and
simple ``"column op literal"`` strings (parsed, never evaluated)."""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

Condition: TypeAlias = tuple[str, str, Any] | str | Callable[[pd.DataFrame], Any] | pd.Series | np.ndarray

_FORMS = (
    "a condition is a (column, op, value) tuple such as ('age', '>', 40), a 'column op literal' string "
    'such as "age > 40" or "site == \'A\'", a function of the subject table, or a boolean mask with one '
    "value per subject"
)
_STRING = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*")

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
        if isinstance(cond, str):
            cond = parse_condition(cond)
        if isinstance(cond, tuple):
            col, op, value = cond
            if op not in _OPS:
                raise ValueError(f"unknown operator {op!r}; use one of {', '.join(_OPS)}")
            mask &= _OPS[op](_column(df, col), value).fillna(False).to_numpy(dtype=bool)
        elif callable(cond):
            mask &= np.asarray(cond(df), dtype=bool)
        else:
            raw = np.asarray(cond)
            if raw.dtype.kind in "US" or (raw.dtype.kind == "O" and any(isinstance(x, str) for x in raw.ravel())):
                raise TypeError(
                    f"a list of subject IDs is not a condition ({_FORMS}); select IDs with "
                    "radi.loc[ids] or ('obs_subject_id', 'in', ids)"
                )
            arr = raw.astype(bool)
            if arr.shape != (len(df),):
                raise ValueError(f"mask of shape {arr.shape} for {len(df)} subjects ({_FORMS})")
            mask &= arr
    return mask


def parse_condition(text: str) -> tuple[str, str, Any]:
    """``"age > 40"`` -> ``("age", ">", 40)``: one column, one comparison, one Python literal (a
    number, a quoted string, ``True`` / ``False`` / ``None``); nothing is evaluated.

    Raises:
        TypeError: ``text`` is not of that form (the message lists the accepted forms).
    """
    m = _STRING.fullmatch(text)
    if m is None:
        raise TypeError(f"cannot read the condition {text!r}: {_FORMS}")
    col, op, literal = m.groups()
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        raise TypeError(
            f"cannot read the condition {text!r}: {literal!r} is not a literal (quote strings: \"site == 'A'\")"
        ) from None
    return col, op, value


def _column(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        raise KeyError(f"obs_meta has no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    return df[col]
