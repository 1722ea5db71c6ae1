"""Cohort descriptions -> :class:`~radiobject.ingest.tasks.VolumeTask` s plus a subject table.

Three ways to describe a cohort:

* a manifest table (CSV / Parquet / DataFrame) with ``subject_id``, ``collection``, ``path`` and
  optional ``obs_id``, ``format`` and metadata columns. A metadata column whose value is the same
  on every row of a subject goes to ``obs_meta`` (per subject); any other goes to ``obs`` (per
  volume). ``obs_columns`` forces columns into ``obs``; a subject table (``participants.csv``)
  adds more ``obs_meta`` columns.
* a glob per collection (``{"T1w": "data/*/t1.nii.gz"}``): the subject ID is the text the
  wildcards matched (repeated parts once), or the first group of ``subject_pattern``.
* a DICOM tree: one folder per subject under a root; every series found in a subject's folder
  becomes one volume of the collection named after its SeriesDescription (or Modality).
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from radiobject.errors import AlignmentError, ImageReadError, ManifestError, SubjectTableError
from radiobject.ingest.table_checks import (
    check_header_names,
    check_scalar_columns,
    id_text,
    parse_table,
    reject_duplicates,
)
from radiobject.ingest.tasks import Problem, VolumeTask
from radiobject.model.paths import bids_sample_parts, subject_id_from_path
from radiobject.model.volume_info import CATALOG_COLUMNS

__all__ = [
    "MISSING_VALUES",
    "PAIRING_HINT",
    "SUBJECT_COLUMNS",
    "CohortPlan",
    "check_join",
    "check_pairing",
    "plan_from_dicom_root",
    "plan_from_globs",
    "plan_from_manifest",
    "read_table",
    "subject_id_for",
]

#: Accepted names of the subject column (manifest and subject table), first match wins.
SUBJECT_COLUMNS: tuple[str, ...] = ("subject_id", "obs_subject_id", "participant_id", "subject")
_RESERVED = {"collection", "path", "obs_id", "format"}
#: Cell texts read as missing: empty, and BIDS' ``n/a`` (``N/A``).
MISSING_VALUES: tuple[str, ...] = ("", "n/a", "N/A")


@dataclass
class CohortPlan:
    """Everything to ingest: tasks in order, the subject table, and rows already known to be bad."""

    tasks: list[VolumeTask] = field(default_factory=list)
    obs_meta: pd.DataFrame | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def collections(self) -> list[str]:
        """Collection names in order of first appearance."""
        return list(dict.fromkeys(t.collection for t in self.tasks))


#: How to pair IDs, said by the never-pair error of the Python constructors (the CLI says its options).
PAIRING_HINT = (
    "pass subject_pattern=r'(sub-[^_/]+)' (CLI --subject-pattern) or {subject: file} mappings "
    "(or validate_alignment=False for collections of different subjects)"
)


def check_pairing(plan: CohortPlan, hint: str = PAIRING_HINT) -> None:
    """Several collections of which no subject has every one are an ``AlignmentError`` naming
    each collection with an example ID: subject IDs taken from file names that never pair
    (``sub-01_T1w`` and ``sub-01_seg``); ``hint`` says how to pair them."""
    ids: dict[str, set[str]] = {}
    for t in plan.tasks:
        ids.setdefault(t.collection, set()).add(t.subject_id)
    if len(ids) > 1 and not set.intersection(*ids.values()):
        examples = "; ".join(f"{n!r}: {min(v)!r}" for n, v in ids.items())
        raise AlignmentError(
            min(next(iter(ids.values()))),
            f"no subject has a volume in every collection ({examples}): the subject IDs taken from the "
            f"file names never pair; {hint}",
        )


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV / TSV / Parquet file as strings-preserving DataFrame (IDs stay text: ``007``)."""
    p = str(path)
    low = p.lower()
    if low.endswith((".parquet", ".pq")):
        return parse_table(p, pd.read_parquet)
    sep = "\t" if low.endswith((".tsv", ".tsv.gz")) else ","
    df = parse_table(
        p,
        lambda q: pd.read_csv(
            q, sep=sep, dtype=str, keep_default_na=False, index_col=False, na_values=list(MISSING_VALUES)
        ),
    )
    check_header_names(p, sep)
    for col in df.columns:  # numbers back to numbers, except ID-like columns
        if col in SUBJECT_COLUMNS or col in _RESERVED:
            continue
        conv = pd.to_numeric(df[col], errors="coerce")
        if conv.notna().sum() == df[col].notna().sum():
            df[col] = conv
    return df


def _subject_column(df: pd.DataFrame, where: str, line: int = 0) -> str:
    for c in SUBJECT_COLUMNS:
        if c in df.columns:
            return c
    raise ManifestError(
        where, line, f"needs a subject column (one of {', '.join(SUBJECT_COLUMNS)}); got {list(df.columns)}"
    )


def _clean(value: object) -> object:
    if isinstance(value, float) and pd.isna(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def _subject_table(subjects: pd.DataFrame | str | os.PathLike[str] | None) -> pd.DataFrame | None:
    if subjects is None:
        return None
    df = read_table(subjects) if not isinstance(subjects, pd.DataFrame) else subjects.copy()
    frame = isinstance(subjects, pd.DataFrame)
    col = _subject_column(df, "subject table" if frame else str(subjects), 0 if frame else 1)
    table = "subject table" if frame else str(subjects)
    if col != "obs_subject_id" and "obs_subject_id" in df.columns:
        raise SubjectTableError(table, f"has both {col!r} and 'obs_subject_id' columns; keep one subject column")
    df = df.rename(columns={col: "obs_subject_id"}).reset_index(drop=True)
    df["obs_subject_id"] = df["obs_subject_id"].map(id_text)
    empty = (df["obs_subject_id"] == "").to_numpy().nonzero()[0]
    if len(empty):
        text_file = not frame and not str(subjects).lower().endswith((".parquet", ".pq"))
        where_row = f"line {int(empty[0]) + 2}" if text_file else f"row {int(empty[0]) + 1}"
        raise SubjectTableError(
            table, f"{len(empty)} row(s) without a subject ID in column {col!r} (first: {where_row})"
        )
    where = "subject table" if isinstance(subjects, pd.DataFrame) else f"subject table {subjects}"
    reject_duplicates(df.reset_index(drop=True), ["obs_subject_id"], where)  # before any volume is written
    return df


def _merge_meta(meta: pd.DataFrame, extra: pd.DataFrame | None, subjects: list[str]) -> pd.DataFrame:
    parts = [bids_sample_parts(s) for s in meta["obs_subject_id"]]
    if len(parts) and all(parts) and "participant_id" not in meta.columns:
        # BIDS subject x session samples (sub-01_ses-pre): keep the subject (for splits) and the
        # session; a participants table then joins on the subject
        # the ignore below: all(parts) above: every entry is a pair, none is None
        meta = meta.assign(participant_id=[p[0] for p in parts], session_id=[p[1] for p in parts])  # type: ignore[index]
        if extra is not None and not set(extra["obs_subject_id"]) & set(subjects):
            extra = extra.rename(columns={"obs_subject_id": "participant_id"})
            check_join(extra["participant_id"].tolist(), meta["participant_id"].tolist())
            return meta.merge(extra, on="participant_id", how="left", suffixes=("", "_subjects"))
    if extra is not None:
        check_join(extra["obs_subject_id"].tolist(), subjects)
        extra = extra[extra["obs_subject_id"].isin(subjects)]
        meta = meta.merge(extra, on="obs_subject_id", how="left", suffixes=("", "_subjects"))
    return meta


def check_join(table_ids: Sequence[str], subjects: Sequence[str], table: str = "(--subjects)") -> None:
    """Raises ``SubjectTableError`` when no ID of a subject table matches an image's subject (the
    join would leave every column missing, e.g. ``01`` vs ``sub-01``); warns when only some do."""
    have, rows = set(subjects), set(table_ids)
    if not have or not rows:
        return
    hits = have & rows
    if not hits:
        raise SubjectTableError(
            table,
            f"none of its {len(rows)} subject IDs (e.g. {sorted(rows)[0]!r}) matches "
            f"one of the {len(have)} subjects found (e.g. {sorted(have)[0]!r}); "
            f"every subject column would be missing",
        )
    if len(hits) < len(have):
        lost = sorted(have - rows)
        warnings.warn(
            f"subject table {table}: {len(lost)} of {len(have)} subjects have no row "
            f"(e.g. {lost[0]!r}); their subject columns are missing",
            stacklevel=3,
        )


def plan_from_manifest(
    manifest: pd.DataFrame | str | os.PathLike[str],
    *,
    subjects: pd.DataFrame | str | os.PathLike[str] | None = None,
    obs_columns: Sequence[str] = (),
    base_dir: str | os.PathLike[str] | None = None,
) -> CohortPlan:
    """A plan from a manifest table (see the module doc); relative paths are resolved against
    ``base_dir`` (default: the manifest's folder)."""
    if isinstance(manifest, pd.DataFrame):
        df, base = manifest.copy(), str(base_dir or os.getcwd())
    else:
        df, base = read_table(manifest), str(base_dir or Path(manifest).resolve().parent)
    mwhere, mline = ("manifest", 0) if isinstance(manifest, pd.DataFrame) else (str(manifest), 1)
    scol = _subject_column(df, mwhere, mline)
    for c in ("collection", "path"):
        if c not in df.columns:
            raise ManifestError(mwhere, mline, f"needs a {c!r} column; got {list(df.columns)}")
    if scol != "obs_subject_id" and "obs_subject_id" in df.columns:
        raise ManifestError(mwhere, mline, f"has both {scol!r} and 'obs_subject_id' columns; keep one subject column")
    df = df.reset_index(drop=True)
    df[scol] = df[scol].map(id_text)
    if "obs_id" in df.columns:
        df["obs_id"] = df["obs_id"].map(id_text)
    _check_duplicate_rows(df, scol, "manifest" if isinstance(manifest, pd.DataFrame) else f"manifest {manifest}")
    meta_cols = [c for c in df.columns if c not in _RESERVED and c != scol]
    check_scalar_columns(df, meta_cols, mwhere, mline)
    unknown = [c for c in obs_columns if c not in meta_cols]
    if unknown:
        raise ManifestError(mwhere, mline, f"obs columns {unknown} are not in the manifest ({meta_cols})")
    per_subject = [
        c for c in meta_cols if c not in obs_columns and (df.groupby(scol)[c].nunique(dropna=False) <= 1).all()
    ]
    per_volume = [c for c in meta_cols if c not in per_subject]
    clash = [c for c in per_volume if c in CATALOG_COLUMNS]
    if clash:
        raise ManifestError(
            mwhere,
            mline,
            f"manifest columns {clash} clash with obs columns the store writes "
            f"itself ({', '.join(sorted(CATALOG_COLUMNS))}); rename them",
        )
    plan = CohortPlan()
    for i, r in enumerate(df.to_dict("records")):
        path = "" if r["path"] is None or r["path"] != r["path"] else str(r["path"])
        if path and not os.path.isabs(path):
            path = os.path.join(base, path)
        sid = r[scol]
        obs_id = (
            str(r["obs_id"]) if "obs_id" in r and r["obs_id"] == r["obs_id"] and r["obs_id"] not in (None, "") else sid
        )
        fmt = str(r["format"]).lower() if "format" in r and isinstance(r.get("format"), str) else "auto"
        task = VolumeTask(
            id_text(r["collection"]),
            sid,
            obs_id,
            path,
            fmt,
            columns={c: _clean(r[c]) for c in per_volume},
            row=f"manifest row {i + 2}",
        )
        if not task.collection:
            plan.problems.append(Problem(task.collection, sid, obs_id, task.row, "no collection given"))
        elif not path:
            plan.problems.append(Problem(task.collection, sid, obs_id, task.row, "no path given"))
        elif not sid:
            plan.problems.append(Problem(task.collection, sid, obs_id, task.row, "no subject ID given"))
        else:
            plan.tasks.append(task)
    subjects_seen = list(dict.fromkeys(t.subject_id for t in plan.tasks))
    meta = df[[scol, *per_subject]].drop_duplicates(scol).rename(columns={scol: "obs_subject_id"})
    meta = meta[meta["obs_subject_id"].isin(subjects_seen)].reset_index(drop=True)
    plan.obs_meta = _merge_meta(meta, _subject_table(subjects), subjects_seen)
    return plan


def _check_duplicate_rows(df: pd.DataFrame, scol: str, where: str) -> None:
    """``DuplicateIdError`` (first rows named, bounded) when two rows name one volume of one collection."""
    oid = df["obs_id"] if "obs_id" in df.columns else pd.Series([None] * len(df), index=df.index)
    oid = oid.map(lambda v: "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v))
    keys = pd.DataFrame({"collection": df["collection"].astype(str), "obs_id": oid.where(oid != "", df[scol])})
    keys = keys[df[scol] != ""]  # rows without a subject are reported on their own
    reject_duplicates(keys, ["collection", "obs_id"], where)


def subject_id_for(path: str, spec: str, subject_pattern: str | None = None) -> str:
    """The subject ID of ``path`` matched by glob ``spec`` (see ``radiobject.model.paths.subject_id_from_path``)."""
    return subject_id_from_path(path, spec, subject_pattern)


def plan_from_globs(
    images: Mapping[str, str | Sequence[str]],
    *,
    subject_pattern: str | None = None,
    subjects: pd.DataFrame | str | os.PathLike[str] | None = None,
) -> CohortPlan:
    """A plan from ``{collection: glob}`` (a glob may match files or DICOM series folders)."""
    plan = CohortPlan()
    for name, spec in images.items():
        specs = [spec] if isinstance(spec, str) else list(spec)
        for s in specs:
            found = sorted(glob.glob(s, recursive=True)) if glob.has_magic(s) else ([s] if os.path.exists(s) else [])
            if not found:  # a typo: refused before anything (a store) is created
                raise ImageReadError(s, f"glob for collection {name!r} matched no files")
            for p in found:
                try:
                    sid = subject_id_for(p, s, subject_pattern)
                except ImageReadError as exc:
                    plan.problems.append(Problem(name, "", "", os.path.abspath(p), exc.reason))
                    continue
                plan.tasks.append(VolumeTask(name, sid, sid, p, row=f"{name}={s}"))
    subjects_seen = list(dict.fromkeys(t.subject_id for t in plan.tasks))
    meta = pd.DataFrame({"obs_subject_id": subjects_seen})
    plan.obs_meta = _merge_meta(meta, _subject_table(subjects), subjects_seen)
    return plan


def _collection_name(text: str, fallback: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_\-]+", "_", text.strip()).strip("_-")
    if not name:
        name = fallback
    if not re.match(r"[A-Za-z_]", name):
        name = "s_" + name
    return name[:100]


def plan_from_dicom_root(
    root: str | os.PathLike[str],
    *,
    collection_key: str = "description",
    subjects: pd.DataFrame | str | os.PathLike[str] | None = None,
) -> CohortPlan:
    """A plan from a DICOM tree ``root/<subject>/...``: every usable series of a subject is one
    volume. ``collection_key``: ``description`` (SeriesDescription, else Modality), ``modality``
    or ``series_number``. Skipped series (localizers, RTSTRUCT, SEG) and subjects with two series
    of one collection are reported, not guessed."""
    from radiobject.formats.dicom import discover_series

    if collection_key not in ("description", "modality", "series_number"):
        raise ValueError(f"collection_key must be description, modality or series_number, not {collection_key!r}")
    plan = CohortPlan()
    base = Path(root)
    if not base.is_dir():
        raise ImageReadError(str(root), "DICOM root is not a folder")
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        sid = folder.name
        try:
            disc = discover_series(folder)
        except ImageReadError as exc:  # an unreadable / oversized file fails this subject only
            plan.problems.append(Problem("", sid, sid, exc.path, exc.reason))
            continue
        if not disc.series:
            plan.problems.append(
                Problem("", sid, sid, str(folder), f"no DICOM series found ({len(disc.skipped_files)} other files)")
            )
        for s in disc.series:
            d = s.to_dict()
            modality = d["modality"] or "image"
            if collection_key == "modality":
                coll = _collection_name(modality, "image")
            elif collection_key == "series_number":
                coll = _collection_name(f"series_{d['series_number']}", "series")
            else:
                coll = _collection_name(d["series_description"] or modality, modality)
            if s.split:
                coll = _collection_name(f"{coll}_{s.key.rsplit('#', 1)[-1]}", coll)
            if s.skipped_reason is not None:
                plan.problems.append(
                    Problem(coll, sid, sid, d["folder"], f"series {s.key} skipped: {s.skipped_reason}")
                )
                continue
            columns = {"series_uid": s.series_uid, "modality": d["modality"], "series_number": d["series_number"]}
            plan.tasks.append(
                VolumeTask(
                    coll, sid, sid, d["folder"], "dicom", tuple(s.paths), columns, row=f"{folder.name}: series {s.key}"
                )
            )
    subjects_seen = list(dict.fromkeys(t.subject_id for t in plan.tasks))
    plan.obs_meta = _merge_meta(
        pd.DataFrame({"obs_subject_id": subjects_seen}), _subject_table(subjects), subjects_seen
    )
    return plan
