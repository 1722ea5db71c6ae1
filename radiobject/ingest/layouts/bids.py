"""BIDS datasets by the BIDS entity rules (no pybids needed).

Identity: a sample is a subject, or a subject x session when the dataset has sessions;
its ID (``obs_subject_id``) is ``sub-01`` or ``sub-01_ses-pre``. ``obs_meta`` keeps the
subject as ``participant_id`` (and ``session_id``), so splits can group by subject and no
subject leaks across folds. ``participants.tsv`` joins on ``participant_id`` and
``sub-XX_sessions.tsv`` on the session; ``n/a`` is missing. Each image's JSON sidecar (with
the inheritance principle: top-level, subject and session sidecars, nearest wins) becomes
``obs`` columns of that volume (lists / objects as JSON text). A DWI's ``.bval`` / ``.bvec``
are stored with the volume as metadata ``diffusion`` (``bvals``: N numbers, ``bvecs``: N x
[i, j, k], FSL convention), the same keys the DICOM reader writes and ``export`` writes back.

Collections are named by the file's entities other than ``sub`` / ``ses``, then its suffix:
``T1w``, ``acq-highres_T1w``, ``task-rest_bold``, ``dwi``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radiobject.errors import LayoutError
from radiobject.ingest.layouts.plan import LayoutPlan, find_incomplete, obs_meta_frame
from radiobject.ingest.manifest import MISSING_VALUES, CohortPlan
from radiobject.ingest.tasks import Problem, VolumeTask

__all__ = ["BidsFile", "parse_bids_name", "plan_bids", "read_bids_table"]

_SKIP_DIRS = frozenset({"derivatives", "sourcedata", "code", "stimuli"})
_NAME = re.compile(
    r"^(?P<entities>(?:[a-zA-Z0-9]+-[a-zA-Z0-9]+_)*[a-zA-Z0-9]+-[a-zA-Z0-9]+)_(?P<suffix>[a-zA-Z0-9]+)"
    r"(?P<ext>\.nii\.gz|\.nii)$"
)


class BidsFile:
    """One BIDS image file: its entities (``{"sub": "01", "ses": "pre", "acq": ...}``), suffix, path."""

    def __init__(self, path: Path, entities: dict[str, str], suffix: str, root: Path | None = None) -> None:
        self.path, self.entities, self.suffix = path, entities, suffix
        self.root = root if root is not None else path.parent

    @property
    def sample_id(self) -> str:
        """``sub-01`` or ``sub-01_ses-pre``."""
        sid = f"sub-{self.entities['sub']}"
        return f"{sid}_ses-{self.entities['ses']}" if "ses" in self.entities else sid

    @property
    def collection(self) -> str:
        parts = [f"{k}-{v}" for k, v in self.entities.items() if k not in ("sub", "ses")]
        return "_".join([*parts, self.suffix])


def parse_bids_name(name: str) -> tuple[dict[str, str], str] | None:
    """``sub-01_ses-pre_acq-hr_T1w.nii.gz`` -> (``{"sub": "01", "ses": "pre", "acq": "hr"}``,
    ``"T1w"``); ``None`` when the name is not a BIDS image name (needs ``sub-`` first)."""
    m = _NAME.match(name)
    if not m:
        return None
    entities: dict[str, str] = {}
    for part in m.group("entities").split("_"):
        k, _, v = part.partition("-")
        if k in entities:
            return None
        entities[k] = v
    if next(iter(entities)) != "sub":
        return None
    return entities, m.group("suffix")


def read_bids_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A BIDS TSV: text IDs kept, ``n/a`` (and empty) missing, number columns numeric."""
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=list(MISSING_VALUES))
    for col in df.columns:
        if col.endswith("_id"):
            continue
        conv = pd.to_numeric(df[col], errors="coerce")
        if conv.notna().sum() == df[col].notna().sum():
            df[col] = conv
    return df


def _inherited(f: BidsFile, root: Path, ext: str) -> list[Path]:
    """Files ``[<entities>_]<suffix><ext>`` that apply to ``f`` by the inheritance principle, from
    the least specific (top level, fewest entities) to the most specific (the file's own)."""
    folders = [root]
    for part in f.path.parent.relative_to(root).parts:
        folders.append(folders[-1] / part)
    found: list[tuple[int, int, Path]] = []
    for depth, folder in enumerate(folders):
        for cand in [*folder.glob(f"*_{f.suffix}{ext}"), *folder.glob(f"{f.suffix}{ext}")]:
            stem = cand.name[: -len(ext)]
            ents = {} if stem == f.suffix else _entities_of(stem[: -len(f.suffix) - 1])
            if ents is None or any(f.entities.get(k) != v for k, v in ents.items()):
                continue
            found.append((depth, len(ents), cand))
    return [p for _, _, p in sorted(found, key=lambda t: (t[0], t[1], t[2].name))]


def _sidecar(f: BidsFile, root: Path) -> dict[str, Any]:
    """The merged JSON sidecar of ``f`` (inheritance principle: the more specific file wins)."""
    merged: dict[str, Any] = {}
    for j in _inherited(f, root, ".json"):
        try:
            merged.update(json.loads(j.read_text()))
        except (OSError, ValueError) as exc:
            raise LayoutError(str(j), f"unreadable JSON sidecar ({exc})") from None
    return merged


def _entities_of(text: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for part in text.split("_"):
        k, sep, v = part.partition("-")
        if not sep:
            return None
        out[k] = v
    return out


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def _dwi_gradients(f: BidsFile) -> dict[str, Any]:
    """``{"diffusion": {...}}`` from the ``.bval`` / ``.bvec`` beside a DWI (the DICOM reader's
    keys: ``bvals`` N numbers, ``bvecs`` N x [i, j, k], FSL convention as in BIDS)."""
    from radiobject.formats.dicom.dwi import CONVENTION

    bvals_found, bvecs_found = _inherited(f, f.root, ".bval"), _inherited(f, f.root, ".bvec")
    if not (bvals_found and bvecs_found):
        return {}
    bval, bvec = bvals_found[-1], bvecs_found[-1]  # the most specific (normally the DWI's own)
    try:
        bvals = np.loadtxt(bval, ndmin=1).ravel()
        vec = np.loadtxt(bvec, ndmin=2)
    except ValueError as exc:
        raise LayoutError(str(bval if "bval" in str(exc) else bvec), f"unreadable gradient file ({exc})") from None
    if vec.shape[0] != 3 and vec.shape[1] == 3:
        vec = vec.T
    if vec.shape != (3, bvals.size):
        raise LayoutError(str(bvec), f"{vec.shape} gradient table for {bvals.size} b-values (expected 3 rows)")
    return {
        "diffusion": {
            "bvals": [float(v) for v in bvals],
            "bvecs": [[float(x) for x in col] for col in vec.T],
            "convention": CONVENTION,
            "source": f"{bval.name}+{bvec.name}",
        }
    }


def plan_bids(
    root: str | os.PathLike[str],
    *,
    suffixes: Sequence[str] | None = None,
    datatypes: Sequence[str] | None = None,
    required: Sequence[str] | None = None,
) -> LayoutPlan:
    """Reads a BIDS dataset folder (raw data; ``derivatives/`` etc. are not read).

    Args:
        suffixes: keep only these suffixes (``["T1w", "dwi"]``); default all image files.
        datatypes: keep only these datatype folders (``["anat"]``).
        required: collections every sample must have (default: all found) for the
            incomplete-subject report.
    """
    base = Path(root)
    if not base.is_dir():
        raise LayoutError(str(root), "BIDS root is not a folder")
    plan = CohortPlan()
    found: list[BidsFile] = []
    for sub in sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith("sub-")):
        for path in sorted(sub.rglob("*.nii*")):
            rel = path.relative_to(base)
            if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts):
                continue
            parsed = parse_bids_name(path.name)
            if parsed is None:
                plan.problems.append(
                    Problem(
                        "",
                        sub.name,
                        "",
                        str(path),
                        "not a BIDS file name (sub-<label>[_<key>-<value>]_<suffix>.nii[.gz])",
                    )
                )
                continue
            ents, suffix = parsed
            if f"sub-{ents['sub']}" != sub.name or ("ses" in ents and f"ses-{ents['ses']}" not in rel.parts):
                plan.problems.append(
                    Problem("", sub.name, "", str(path), "file name entities disagree with its folders")
                )
                continue
            if suffixes is not None and suffix not in suffixes:
                continue
            if datatypes is not None and path.parent.name not in datatypes:
                continue
            found.append(BidsFile(path, ents, suffix, base))
    if not found and not plan.problems:
        raise LayoutError(str(root), "no BIDS image (sub-*/[ses-*/]<datatype>/sub-*.nii[.gz]) found")
    samples: dict[str, dict[str, Any]] = {}
    for f in found:
        sidecar = {k: _cell(v) for k, v in _sidecar(f, base).items()}
        meta = _dwi_gradients(f) if f.suffix == "dwi" else {}
        plan.tasks.append(
            VolumeTask(
                f.collection,
                f.sample_id,
                f.sample_id,
                str(f.path),
                "nifti",
                columns=sidecar,
                row=str(f.path.relative_to(base)),
                metadata=meta,
            )
        )
        row = samples.setdefault(f.sample_id, {"participant_id": f"sub-{f.entities['sub']}"})
        if "ses" in f.entities:
            row["session_id"] = f"ses-{f.entities['ses']}"
    meta = obs_meta_frame(samples) if samples else pd.DataFrame({"obs_subject_id": pd.Series([], dtype=str)})
    table_subjects: list[str] = []
    ptsv = base / "participants.tsv"
    if ptsv.exists():
        part = read_bids_table(ptsv)
        if "participant_id" not in part.columns:
            raise LayoutError(str(ptsv), f"needs a participant_id column; has {list(part.columns)}")
        part["participant_id"] = part["participant_id"].astype(str)
        table_subjects = part["participant_id"].tolist()
        ids = set(meta.get("participant_id", pd.Series([], dtype=str)))
        if ids and not ids & set(table_subjects):
            raise LayoutError(
                str(ptsv),
                f"none of its participant_id values (e.g. {table_subjects[:1]}) matches a "
                f"subject folder (e.g. {sorted(ids)[:1]})",
            )
        meta = meta.merge(part, on="participant_id", how="left", suffixes=("", "_participants"))
    meta = _join_sessions(base, meta)
    plan.obs_meta = meta
    # a participants row without images is reported by subject (sessions: by participant)
    image_subjects = set(meta["participant_id"]) if "participant_id" in meta.columns else set()
    incomplete = find_incomplete(plan, required)
    incomplete += find_incomplete(CohortPlan(), [], [s for s in table_subjects if s not in image_subjects])
    return LayoutPlan("bids", str(base), plan, incomplete=incomplete)


def _join_sessions(base: Path, meta: pd.DataFrame) -> pd.DataFrame:
    if "session_id" not in meta.columns:
        return meta
    tables = []
    for sub in sorted(set(meta["participant_id"])):
        path = base / sub / f"{sub}_sessions.tsv"
        if path.exists():
            t = read_bids_table(path)
            if "session_id" not in t.columns:
                raise LayoutError(str(path), "needs a session_id column")
            tables.append(t.assign(participant_id=sub))
    if not tables:
        return meta
    ses = pd.concat(tables, ignore_index=True)
    return meta.merge(ses, on=["participant_id", "session_id"], how="left", suffixes=("", "_sessions"))
