"""Running a cohort ingest: validate, write every collection (threads, processes or Dask), add
subjects, report.

Resumable and idempotent: a volume is complete once its ``obs`` row is committed (after its
array), so a re-run skips every committed volume (``skip_existing``) and rewrites only what a
crash left unreferenced. ``ingest.json`` at the store root is written last, after the subject
table, and records whether the run completed without failures.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from radiobject.model.bulk import IngestReport, ItemResult, Submitter, executor_submitter
from radiobject.model.collection import VolumeCollection
from radiobject.ingest.manifest import CohortPlan
from radiobject.ingest.tasks import Problem, VolumeTask, find_problems, to_ingest_item
from radiobject.model.options import WriteOptions
from radiobject.model.radi_object import RadiObject
from radiobject.storage import files
from radiobject.storage.options import StorageOptions

__all__ = ["EXECUTORS", "MARKER", "CohortReport", "run_ingest"]

#: Written last by every run: ``{"complete": bool, "counts": {...}, "finished": ISO time}``.
MARKER = "ingest.json"
EXECUTORS: tuple[str, ...] = ("thread", "process")


@dataclass
class CohortReport:
    """Outcome of one ingest run: per-collection item results plus rows rejected before writing."""

    uri: str
    backend: str = ""
    collections: dict[str, IngestReport] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    subjects_added: int = 0
    seconds: float = 0.0
    aborted: str = ""

    def rows(self) -> list[dict[str, Any]]:
        """One dict per item: collection, obs_id, subject, status, seconds, nbytes, source, error."""
        out: list[dict[str, Any]] = []
        for p in self.problems:
            out.append({"collection": p.collection, "obs_id": p.obs_id, "obs_subject_id": p.subject_id,
                        "status": "failed", "seconds": 0.0, "nbytes": 0, "source": p.source, "error": p.reason})
        for name, rep in self.collections.items():
            for r in rep.results:
                out.append({"collection": name, **asdict(r)})
        return out

    def count(self, status: str) -> int:
        """Items with this status (``written``, ``present`` or ``failed``)."""
        n = sum(rep.count(status) for rep in self.collections.values())
        return n + (len(self.problems) if status == "failed" else 0)

    @property
    def failed(self) -> list[dict[str, Any]]:
        out = [r for r in self.rows() if r["status"] == "failed"] if self.count("failed") else []
        return out

    @property
    def ok(self) -> bool:
        """True when nothing failed and the run was not aborted."""
        return not self.aborted and not self.failed

    @property
    def bytes_written(self) -> int:
        return sum(r.nbytes for rep in self.collections.values() for r in rep.results if r.status == "written")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable report (the CLI's ``--json``)."""
        rows = self.rows()
        per: dict[str, dict[str, int]] = {}
        for name in dict.fromkeys([*self.collections, *(p.collection for p in self.problems)]):
            per[name] = {"written": 0, "present": 0, "failed": 0}
        for r in rows:
            per[r["collection"]][r["status"]] += 1
        return {
            "uri": self.uri, "backend": self.backend, "ok": self.ok, "aborted": self.aborted,
            "seconds": round(self.seconds, 3), "subjects_added": self.subjects_added,
            "counts": {s: self.count(s) for s in ("written", "present", "failed")},
            "bytes_written": self.bytes_written, "collections": per, "items": rows,
        }

    def summary_table(self, max_failures: int = 50) -> str:
        """The end-of-run table: per collection ingested / already present / failed, then reasons."""
        d = self.to_dict()
        lines = [f"{'collection':<20} {'ingested':>9} {'already present':>16} {'failed':>7}"]
        for name, c in d["collections"].items():
            lines.append(f"{name or '-':<20} {c['written']:>9} {c['present']:>16} {c['failed']:>7}")
        c = d["counts"]
        lines.append(f"{'total':<20} {c['written']:>9} {c['present']:>16} {c['failed']:>7}")
        mb = self.bytes_written / 1e6
        rate = f", {c['written'] / self.seconds:.1f} volumes/s, {mb / self.seconds:.1f} MB/s" if self.seconds > 0 else ""
        lines.append(f"{mb:.1f} MB written in {self.seconds:.2f} s{rate}; {self.subjects_added} subject(s) added")
        failed = self.failed
        if failed:
            lines.append(f"failed ({len(failed)}):")
            for r in failed[:max_failures]:
                who = "/".join(x for x in (r["collection"], r["obs_id"]) if x) or "-"
                lines.append(f"  {who}: {r['error']}  [{r['source']}]")
            if len(failed) > max_failures:
                lines.append(f"  ... {len(failed) - max_failures} more (see --json)")
        if self.aborted:
            lines.append(f"aborted: {self.aborted}")
        return "\n".join(lines)


def _subjects_to_add(radi: RadiObject, plan_meta: pd.DataFrame | None, ingested: list[str]) -> pd.DataFrame:
    """Rows for subjects with at least one stored volume that are new or changed in ``obs_meta``."""
    meta = plan_meta if plan_meta is not None else pd.DataFrame({"obs_subject_id": ingested})
    meta = meta[meta["obs_subject_id"].isin(set(ingested))]
    have = set(meta["obs_subject_id"].tolist())
    missing = [s for s in ingested if s not in have]
    if missing:
        meta = pd.concat([meta, pd.DataFrame({"obs_subject_id": missing})], ignore_index=True)
    current = radi.obs_meta.set_index("obs_subject_id")
    known = meta["obs_subject_id"].isin(current.index).to_numpy()
    keep = ~known
    cols = [c for c in meta.columns if c != "obs_subject_id"]
    if known.any() and cols:
        if any(c not in current.columns for c in cols):
            keep = np.ones(len(meta), dtype=bool)
        else:
            sub = meta[known]
            old = current.loc[sub["obs_subject_id"].tolist(), cols].reset_index(drop=True)
            new = sub[cols].reset_index(drop=True)
            changed = np.array([any(not _same(o, n) for o, n in zip(ro, rn, strict=True))
                                for ro, rn in zip(old.itertuples(index=False), new.itertuples(index=False), strict=True)],
                               dtype=bool)
            keep[np.flatnonzero(known)] = changed
    return meta[keep].reset_index(drop=True)


def _same(a: Any, b: Any) -> bool:
    try:
        if pd.isna(a) and pd.isna(b):
            return True
    except (TypeError, ValueError):  # lists / arrays
        pass
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def run_ingest(
    uri: str,
    plan: CohortPlan,
    *,
    options: WriteOptions | None = None,
    storage: StorageOptions | None = None,
    canonical: bool = False,
    validate_alignment: bool = True,
    fail_fast: bool = False,
    executor: str = "thread",
    submitter: Submitter | None = None,
    progress: bool = False,
    compact: bool = True,
    log: Callable[[str], None] | None = None,
) -> CohortReport:
    """Ingests ``plan`` into the store at ``uri`` (created when absent, extended otherwise).

    Args:
        options: backend, chunks, codec, ``workers`` (threads, or processes with
            ``executor="process"``) and ``commit_every``. An existing store keeps its backend.
        canonical: reorient every image to RAS+ before writing.
        validate_alignment: hold back subjects whose volumes differ in shape / affine (on by
            default, like the CLI and ``RadiObject.from_files``).
        fail_fast: stop at the first problem (validation: before anything is written).
        executor: ``thread`` (in-process, ``radiobject.model.bulk``) or ``process`` (a spawn pool).
        submitter: ``(submit, as_completed)`` of an external executor (Dask; see
            ``radiobject.ingest.dask``); overrides ``executor``.
        progress: show a progress bar per collection.
        compact: when anything was written, fold the tables' fragments into one at the end (opening
            a 10,000-volume store then reads one Parquet file per table, not hundreds).
        log: receives one-line notes (e.g. the backend of an existing store).
    """
    t0 = time.perf_counter()
    opts = options or WriteOptions()
    storage = storage or StorageOptions()
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
    tasks, problems = find_problems(plan.tasks, validate_alignment=validate_alignment, canonical=canonical,
                                    workers=max(4, opts.workers))
    report = CohortReport(uri, problems=[*plan.problems, *problems])
    if fail_fast and report.problems:
        report.aborted = f"{len(report.problems)} invalid item(s) and --fail-fast: nothing written"
        report.seconds = time.perf_counter() - t0
        return report
    radi = RadiObject.create(uri, options=opts, storage=storage, exist_ok=True)
    if radi.backend_name != opts.backend:
        if log:
            log(f"note: {uri} is an existing {radi.backend_name} store; writing {radi.backend_name} arrays")
        opts = replace(opts, backend=radi.backend_name)
    report.backend = radi.backend_name
    by_coll: dict[str, list[VolumeTask]] = {}
    for t in tasks:
        by_coll.setdefault(t.collection, []).append(t)
    pool = None
    if submitter is None and executor == "process":
        import multiprocessing as mp

        pool = ProcessPoolExecutor(max_workers=opts.workers, mp_context=mp.get_context("spawn"))
        submitter = executor_submitter(pool)
    on_error = "raise" if fail_fast else "collect"
    try:
        for name, ts in by_coll.items():
            items = [to_ingest_item(t, canonical) for t in ts]
            try:
                rep = radi.add_collection(name, items, options=opts, skip_existing=True, on_error=on_error,
                                          progress=name if progress else False, submitter=submitter)
            except Exception as exc:  # noqa: BLE001 - fail-fast stop: report what happened
                report.aborted = f"collection {name!r}: {exc}"
                rep = _report_from_store(radi, name, ts, str(exc))
                report.collections[name] = rep
                break
            report.collections[name] = rep
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    radi = RadiObject(uri, storage=storage)
    stored = {r.obs_subject_id for rep in report.collections.values() for r in rep.results
              if r.status in ("written", "present")}
    ingested = [s for s in dict.fromkeys(t.subject_id for t in tasks) if s in stored]
    add = _subjects_to_add(radi, plan.obs_meta, ingested)
    if len(add):
        radi.add_subjects(add)
    report.subjects_added = len(add)
    if compact and (report.count("written") or len(add)):
        radi.compact()
    report.seconds = time.perf_counter() - t0
    marker = {"format": "radiobject-ingest", "complete": report.ok, "aborted": report.aborted,
              "counts": {s: report.count(s) for s in ("written", "present", "failed")},
              "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    files.write_json_atomic(files.join(uri, MARKER), json.loads(json.dumps(marker)), storage)
    return report


def _report_from_store(radi: RadiObject, name: str, tasks: list[VolumeTask], error: str) -> IngestReport:
    """After a fail-fast stop: what is committed counts as written, the rest as failed / not run."""
    try:
        done = set(VolumeCollection(files.join(radi.uri, "collections", name), storage=radi.location.storage).obs_ids)
    except Exception:  # noqa: BLE001
        done = set()
    rep = IngestReport()
    for t in tasks:
        status = "written" if t.obs_id in done else "failed"
        rep.results.append(ItemResult(t.obs_id, t.subject_id, status, error="" if status == "written" else
                                      f"not ingested (run stopped: {error})", source=t.path))
    return rep
