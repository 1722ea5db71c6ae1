"""Train / validation and k-fold splits over subjects, stratified and grouped, stored in ``obs_meta``.

``make_splits`` assigns every subject (row of ``obs_meta``) a ``fold`` (0 .. k-1) and a
``split`` (``train`` / ``val``: ``val`` is fold ``val_fold``), or, with ``val_fraction``, only a
``split``. Units of assignment are groups: with sessions (BIDS ``sub-01_ses-pre``), all
sessions of one ``participant_id`` land in the same fold, so no subject leaks between train
and validation. ``stratify`` balances a column's values (e.g. ``site``, ``grade``) across folds.
The same seed gives the same split. ``write_splits`` stores the columns in ``obs_meta``, where
the loaders read them (``split=`` / ``fold=``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd

from radiobject.model.subjects import SUBJECT

__all__ = ["FOLD", "SPLIT", "default_group_column", "fold_sizes", "make_splits", "split_store", "write_splits"]

FOLD, SPLIT = "fold", "split"
_GROUP_CANDIDATES = ("participant_id", "subject")


def default_group_column(meta: pd.DataFrame) -> str | None:
    """``participant_id`` (or ``subject``) when it groups several samples of ``obs_meta``, else None."""
    for c in _GROUP_CANDIDATES:
        if c in meta.columns and meta[c].notna().all() and meta[c].nunique() < len(meta):
            return c
    return None


def _units(meta: pd.DataFrame, group: str | None, stratify: str | None) -> pd.DataFrame:
    """One row per unit (group): its subjects, size and stratum (its most common value)."""
    key = meta[group].astype(str) if group else meta[SUBJECT].astype(str)
    if group and meta[group].isna().any():
        raise ValueError(f"group column {group!r} has missing values")
    strata = (
        meta[stratify].map(lambda v: "<missing>" if pd.isna(v) else v)
        if stratify
        else pd.Series("all", index=meta.index)
    )
    df = pd.DataFrame({"unit": key.to_numpy(), "stratum": strata.to_numpy(), SUBJECT: meta[SUBJECT].to_numpy()})
    rows = []
    for unit, sub in df.groupby("unit", sort=True):
        rows.append(
            {
                "unit": unit,
                "size": len(sub),
                "stratum": sub["stratum"].mode().iloc[0],
                "subjects": sub[SUBJECT].tolist(),
            }
        )
    return pd.DataFrame(rows)


def make_splits(
    meta: pd.DataFrame,
    *,
    k: int | None = 5,
    val_fold: int = 0,
    val_fraction: float | None = None,
    stratify: str | None = None,
    group: str | None = "auto",
    seed: int = 0,
) -> pd.DataFrame:
    """``obs_subject_id``, ``fold`` (k-fold only) and ``split`` for every row of ``meta``.

    Args:
        k: folds (>= 2); ``None`` with ``val_fraction`` for one train / val split.
        val_fold: the fold whose subjects are ``split == "val"``.
        val_fraction: hold out this fraction of units (per stratum) as ``val`` (k must be None).
        stratify: an ``obs_meta`` column whose values are spread evenly (missing is one value).
        group: a column whose equal values stay together (default ``auto``: ``participant_id``
            when it groups several samples); ``None`` for none.
        seed: random seed of the shuffle.
    """
    if SUBJECT not in meta.columns:
        raise ValueError(f"make_splits needs an {SUBJECT!r} column")
    if stratify is not None and stratify not in meta.columns:
        raise ValueError(f"stratify column {stratify!r} is not in obs_meta ({list(meta.columns)})")
    if group == "auto":
        group = default_group_column(meta)
    elif group is not None and group not in meta.columns:
        raise ValueError(f"group column {group!r} is not in obs_meta ({list(meta.columns)})")
    units = _units(meta, group, stratify)
    rng = np.random.default_rng(seed)
    assign: dict[Hashable, int] = {}
    if val_fraction is not None:
        if k is not None:
            raise ValueError("give k (folds) or val_fraction (one split), not both")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        for _, st in units.groupby("stratum", sort=True):
            order = st["unit"].to_numpy()[rng.permutation(len(st))]
            n_val = min(len(order) - 1, max(1, round(val_fraction * len(order)))) if len(order) > 1 else 0
            assign.update({u: int(i < n_val) for i, u in enumerate(order)})
        split = {
            s: ("val" if assign[u] else "train")
            for u, subs in zip(units["unit"], units["subjects"], strict=True)
            for s in subs
        }
        return pd.DataFrame({SUBJECT: meta[SUBJECT].to_numpy(), SPLIT: meta[SUBJECT].map(split).to_numpy()})
    if k is None or k < 2:
        raise ValueError(f"k must be >= 2 folds (or give val_fraction), got {k}")
    if len(units) < k:
        raise ValueError(f"{len(units)} unit(s) ({group or 'subjects'}) cannot fill {k} folds")
    if not 0 <= val_fold < k:
        raise ValueError(f"val_fold must be in 0..{k - 1}, got {val_fold}")
    totals = np.zeros(k, dtype=np.int64)
    for _, st in units.groupby("stratum", sort=True):
        st = st.iloc[rng.permutation(len(st))]
        st = st.sort_values("size", ascending=False, kind="stable")
        in_stratum = np.zeros(k, dtype=np.int64)
        for u, size in zip(st["unit"], st["size"], strict=True):
            f = int(np.lexsort((rng.random(k), totals, in_stratum))[0])  # fewest of this stratum, then overall
            assign[u] = f
            in_stratum[f] += size
            totals[f] += size
    fold = {s: assign[u] for u, subs in zip(units["unit"], units["subjects"], strict=True) for s in subs}
    folds = meta[SUBJECT].map(fold).astype("int64").to_numpy()
    return pd.DataFrame(
        {SUBJECT: meta[SUBJECT].to_numpy(), FOLD: folds, SPLIT: np.where(folds == val_fold, "val", "train")}
    )


def write_splits(radi: Any, splits: pd.DataFrame) -> None:
    """Stores ``fold`` / ``split`` of ``splits`` as ``obs_meta`` columns (other columns kept;
    earlier values of these columns replaced).

    A column of an earlier split that ``splits`` lacks is dropped from ``obs_meta``: a train / val
    split (``val_fraction``, no ``fold``) after a k-fold split leaves no stale ``fold`` behind.
    """
    meta = pd.DataFrame(radi.obs_meta)
    cols = [c for c in (FOLD, SPLIT) if c in splits.columns]
    unknown = set(splits[SUBJECT]) - set(meta[SUBJECT])
    if unknown:
        raise ValueError(f"splits name subjects not in the store, e.g. {sorted(unknown)[0]!r}")
    stale = [c for c in (FOLD, SPLIT) if c in meta.columns and c not in cols]
    meta = meta.drop(columns=[c for c in (FOLD, SPLIT) if c in meta.columns])
    meta = meta.merge(splits[[SUBJECT, *cols]], on=SUBJECT, how="inner")
    radi.add_subjects(meta)
    if stale:
        radi.drop_subject_columns(stale)


def split_store(radi: Any, **kwargs: Any) -> pd.DataFrame:
    """``make_splits(radi.obs_meta, **kwargs)`` written into the store; returns the splits."""
    splits = make_splits(pd.DataFrame(radi.obs_meta), **kwargs)
    write_splits(radi, splits)
    return splits


def fold_sizes(splits: pd.DataFrame) -> dict[int, int]:
    """Subjects per fold (a quick balance check)."""
    return {int(f): int(n) for f, n in splits[FOLD].value_counts().sort_index().items()}
