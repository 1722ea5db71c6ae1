"""What a layout reader produces: the :class:`LayoutPlan` (a cohort plan plus label maps,
channel names and the incomplete subjects found up front) and the incomplete-subject policy."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from radiobject.errors import LayoutError
from radiobject.ingest.manifest import CohortPlan

#: What ingest does with an incomplete subject: ``keep`` (ingest what there is, report it),
#: ``skip`` (ingest none of its volumes, report it) or ``error`` (raise before writing).
INCOMPLETE_POLICIES: tuple[str, ...] = ("keep", "skip", "error")


@dataclass(frozen=True)
class Incomplete:
    """A subject missing something: ``missing`` names collections (or ``"images"`` for a
    participants row without any image)."""

    subject_id: str
    missing: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.subject_id}: no {', '.join(self.missing)}"


@dataclass
class LayoutPlan:
    """A dataset folder read as a cohort plan plus what the layout says about its collections."""

    layout: str
    root: str
    plan: CohortPlan
    label_maps: dict[str, Any] = field(default_factory=dict)  # collection -> LabelMap
    collection_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    incomplete: list[Incomplete] = field(default_factory=list)

    @property
    def label_collections(self) -> list[str]:
        return list(self.label_maps)


def find_incomplete(
    plan: CohortPlan, required: Sequence[str] | None = None, table_subjects: Sequence[str] = ()
) -> list[Incomplete]:
    """Subjects lacking a ``required`` collection (default: every collection of the plan), and
    subject-table rows (``table_subjects``) without any image."""
    have: dict[str, set[str]] = {}
    for t in plan.tasks:
        have.setdefault(t.subject_id, set()).add(t.collection)
    need = list(required) if required is not None else plan.collections
    out = [
        Incomplete(s, tuple(c for c in need if c not in cs)) for s, cs in have.items() if any(c not in cs for c in need)
    ]
    # a participants row is covered by its sessions' samples (BIDS: sub-01 by sub-01_ses-pre, ...)
    covered = set(have) | {s.split("_ses-", 1)[0] for s in have}
    meta = plan.obs_meta
    if meta is not None and "participant_id" in meta.columns and "obs_subject_id" in meta.columns:
        rows = meta[meta["obs_subject_id"].astype(str).isin(have)]
        covered |= {str(v) for v in rows["participant_id"].dropna()}
    out += [Incomplete(s, ("images",)) for s in dict.fromkeys(table_subjects) if s not in covered]
    return out


def incomplete_report(plan: CohortPlan, subjects: Any = None, limit: int = 50) -> list[str]:
    """Lines naming the incomplete subjects of a plan (a collection missing, or a row of the
    subject table ``subjects`` - a path or DataFrame - without images); ``[]`` when none."""
    from radiobject.ingest.manifest import SUBJECT_COLUMNS, read_table

    table_ids: list[str] = []
    if subjects is not None:
        df = subjects if isinstance(subjects, pd.DataFrame) else read_table(subjects)
        col = next((c for c in (*SUBJECT_COLUMNS, "obs_subject_id") if c in df.columns), None)
        table_ids = [str(v) for v in df[col].dropna()] if col else []
    found = find_incomplete(plan, table_subjects=table_ids)
    if not found:
        return []
    lines = [f"{len(found)} incomplete subject(s) (ingested as they are):"]
    lines += [f"  {i}" for i in found[:limit]]
    if len(found) > limit:
        lines.append(f"  ... {len(found) - limit} more")
    return lines


def apply_incomplete_policy(lp: LayoutPlan, policy: str) -> LayoutPlan:
    """``keep``: unchanged; ``skip``: the incomplete subjects are left out of the plan (listed by
    ``ingest_layout`` up front; not failures); ``error``: ``LayoutError`` listing them."""
    if policy not in INCOMPLETE_POLICIES:
        raise ValueError(f"incomplete policy must be one of {INCOMPLETE_POLICIES}, not {policy!r}")
    if not lp.incomplete or policy == "keep":
        return lp
    if policy == "error":
        shown = "; ".join(str(i) for i in lp.incomplete[:20])
        more = f" (and {len(lp.incomplete) - 20} more)" if len(lp.incomplete) > 20 else ""
        raise LayoutError(lp.root, f"{len(lp.incomplete)} incomplete subject(s): {shown}{more}")
    bad = {i.subject_id for i in lp.incomplete}
    plan = lp.plan
    keep = [t for t in plan.tasks if t.subject_id not in bad]
    meta = plan.obs_meta
    if meta is not None:
        meta = meta[~meta["obs_subject_id"].isin(bad)].reset_index(drop=True)
    new = CohortPlan(keep, meta, list(plan.problems))
    return LayoutPlan(lp.layout, lp.root, new, lp.label_maps, lp.collection_meta, lp.incomplete)


def apply_subjects(lp: LayoutPlan, subjects: pd.DataFrame | str | os.PathLike[str] | None) -> LayoutPlan:
    """``lp`` with the subject table ``subjects`` (a path or DataFrame, as ``radiobject ingest
    --subjects``; ``None``: ``lp`` unchanged) joined into its ``obs_meta`` as the cohort plans join
    it: by subject ID, a column the layout already has kept and the table's renamed ``*_subjects``.
    BIDS session samples (``sub-01_ses-pre``) join a table of subjects (``sub-01``) on
    ``participant_id``. Table rows without images are added to ``lp.incomplete``.
    ``SubjectTableError`` (before anything is written) when no table ID matches a subject."""
    if subjects is None:
        return lp
    from radiobject.ingest.manifest import _merge_meta, _subject_table, check_join

    table = _subject_table(subjects)
    if table is None:
        return lp
    seen = list(dict.fromkeys(t.subject_id for t in lp.plan.tasks))
    meta = lp.plan.obs_meta if lp.plan.obs_meta is not None else pd.DataFrame({"obs_subject_id": seen})
    ids = [str(v) for v in table["obs_subject_id"]]
    participants = [str(v) for v in meta["participant_id"].dropna()] if "participant_id" in meta.columns else []
    if participants and not set(ids) & set(seen):  # BIDS sessions: the table names subjects
        check_join(ids, participants)
        extra = table.rename(columns={"obs_subject_id": "participant_id"})
        meta = meta.merge(extra, on="participant_id", how="left", suffixes=("", "_subjects"))
    else:
        meta = _merge_meta(meta, table, seen)
    known = set(seen) | set(participants) | {i.subject_id for i in lp.incomplete}
    missing = find_incomplete(CohortPlan(), [], [s for s in ids if s not in known])
    return replace(lp, plan=replace(lp.plan, obs_meta=meta), incomplete=[*lp.incomplete, *missing])


def obs_meta_frame(rows: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """``{subject: {column: value}}`` -> a subject table with ``obs_subject_id`` first."""
    df = pd.DataFrame.from_dict(dict(rows), orient="index")
    df.index.name = "obs_subject_id"
    return df.reset_index()
