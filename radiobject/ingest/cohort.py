"""Running a cohort ingest: validate, write every collection (threads, processes or Dask), add
subjects, report.

Resumable and idempotent: a volume is complete once its ``obs`` row is committed (after its
array), so a re-run skips every committed volume (``skip_existing``) and rewrites only what a
crash left unreferenced. A stored volume whose source files changed since is replaced (or failed,
or kept: ``on_changed``). ``ingest.json`` at the store root says ``complete: false`` while a run is
going and is rewritten last, after the subject table, with whether the run completed without failures.
The report (``CohortReport``, ``STATUSES``) lives in ``radiobject.ingest._cohort_report``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from radiobject.errors import SourceChangedError
from radiobject.ingest._cohort_report import STATUSES, STORED, CohortReport
from radiobject.ingest.changes import ON_CHANGED, changed_sources
from radiobject.ingest.manifest import CohortPlan
from radiobject.ingest.target import MARKER, check_target, write_marker
from radiobject.ingest.tasks import VolumeTask, find_problems, to_ingest_item
from radiobject.model.bulk import IngestReport, ItemResult, Submitter, executor_submitter
from radiobject.model.collection import VolumeCollection
from radiobject.model.options import WriteOptions
from radiobject.model.radi_object import RadiObject
from radiobject.storage import files
from radiobject.storage.options import StorageOptions

__all__ = ["EXECUTORS", "MARKER", "STATUSES", "CohortReport", "run_ingest"]

EXECUTORS: tuple[str, ...] = ("thread", "process")


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
            changed = np.array(
                [
                    any(not _same(o, n) for o, n in zip(ro, rn, strict=True))
                    for ro, rn in zip(old.itertuples(index=False), new.itertuples(index=False), strict=True)
                ],
                dtype=bool,
            )
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
    on_changed: str = "replace",
    rehash: bool = False,
    raise_errors: bool = False,
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
        on_changed: a planned volume that is stored but whose source files changed since
            (``radiobject.ingest.changes``): ``replace`` it with a new version, published atomically
            (status ``replaced``; the default), ``error`` (a failed item, ``SourceChangedError``) or
            ``skip`` (kept as stored, reported as ``present`` with the reason).
        rehash: hash every stored volume's sources to find changes (default: only sources whose
            size or mtime differ are hashed).
        raise_errors: raise the first invalid item (before anything is written) or failed write,
            typed, instead of reporting it (the Python constructors' mode; with ``fail_fast``).
        log: receives one-line notes (e.g. the backend of an existing store).

    Nothing is created when no planned volume is valid; a folder that exists and is not a store
    is refused (``StoreExistsError``). ``ingest.json`` says ``complete: false`` from the start of a
    run until its end, also after a kill or a signal.
    """
    t0 = time.perf_counter()
    opts = options or WriteOptions()
    storage = storage or StorageOptions()
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
    if on_changed not in ON_CHANGED:
        raise ValueError(f"on_changed must be one of {ON_CHANGED}, not {on_changed!r}")
    existed = check_target(uri, storage)
    tasks, problems = find_problems(
        plan.tasks,
        validate_alignment=validate_alignment,
        canonical=canonical,
        workers=max(4, opts.workers),
        item_timeout_s=opts.item_timeout_s,
    )
    report = CohortReport(uri, problems=[*plan.problems, *problems])
    if raise_errors and report.problems:
        raise report.problems[0].as_error()
    if fail_fast and report.problems:
        report.aborted = f"{len(report.problems)} invalid item(s) and --fail-fast: nothing written"
        report.seconds = time.perf_counter() - t0
        return report
    if not tasks and not existed:
        report.aborted = f"nothing to ingest ({len(report.problems)} invalid item(s)): no store created"
        report.seconds = time.perf_counter() - t0
        return report
    radi = RadiObject.create(uri, options=opts, storage=storage, exist_ok=True)
    if radi.backend_name != opts.backend:
        if log:
            log(f"note: {uri} is an existing {radi.backend_name} store; writing {radi.backend_name} arrays")
        opts = replace(opts, backend=radi.backend_name)
    report.backend = radi.backend_name
    write_marker(uri, storage, complete=False, running=True)
    pool: Executor | None = None
    try:
        if submitter is None:
            import multiprocessing as mp

            pool = (
                ProcessPoolExecutor(max_workers=opts.workers, mp_context=mp.get_context("spawn"))
                if executor == "process"
                else ThreadPoolExecutor(max_workers=opts.workers)
            )
            submitter = executor_submitter(pool)
        _write_collections(
            radi, tasks, report, opts, canonical, fail_fast, progress, submitter, on_changed, rehash, raise_errors
        )
    except BaseException as exc:  # an error raised (raise_errors), or SIGINT / SIGTERM: mark, then stop
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            pool = None
        stop = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "stopped"
        report.aborted = f"{stop} ({type(exc).__name__}: {exc}); re-run to resume"
        write_marker(uri, storage, complete=False, aborted=report.aborted, counts=_counts(report))
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    radi = RadiObject(uri, storage=storage)
    stored = {r.obs_subject_id for rep in report.collections.values() for r in rep.results if r.status in STORED}
    ingested = [s for s in dict.fromkeys(t.subject_id for t in tasks) if s in stored]
    add = _subjects_to_add(radi, plan.obs_meta, ingested)
    if len(add):
        radi.add_subjects(add)
    report.subjects_added = len(add)
    _count_labels(radi, report, progress, log)
    if compact and (report.count("written") or report.count("replaced") or len(add)):
        radi.compact()
    report.seconds = time.perf_counter() - t0
    write_marker(uri, storage, complete=report.ok, aborted=report.aborted, counts=_counts(report))
    return report


def _counts(report: CohortReport) -> dict[str, int]:
    return {s: report.count(s) for s in STATUSES}


def _write_collections(
    radi: RadiObject,
    tasks: list[VolumeTask],
    report: CohortReport,
    opts: WriteOptions,
    canonical: bool,
    fail_fast: bool,
    progress: bool,
    submitter: Submitter,
    on_changed: str,
    rehash: bool,
    raise_errors: bool = False,
) -> None:
    """Writes each collection's new (and changed) volumes; fills ``report.collections``."""
    by_coll: dict[str, list[VolumeTask]] = {}
    for t in tasks:
        by_coll.setdefault(t.collection, []).append(t)
    on_error = "raise" if fail_fast else "collect"
    for name, ts in by_coll.items():
        todo, kept, changed = ts, IngestReport(), {}
        if name in radi.collection_names:
            coll = _stored_collection(radi, name)
            changed = changed_sources(
                coll, ts, rehash=rehash, workers=max(4, opts.workers), item_timeout_s=opts.item_timeout_s
            )
            todo, kept = _split_stored(name, coll, ts, changed, on_changed)
        items = [to_ingest_item(t, canonical) for t in todo]
        try:
            rep = radi.add_collection(
                name,
                items,
                options=opts,
                skip_existing=True,
                on_error=on_error,
                progress=name if progress else False,
                submitter=submitter,
                **({"replace_existing": True} if changed and on_changed == "replace" else {}),
            )
        except Exception as exc:  # noqa: BLE001 - fail-fast stop: report what happened
            if raise_errors:
                raise
            report.aborted = f"collection {name!r}: {exc}"
            report.collections[name] = _report_from_store(radi, name, ts, str(exc))
            break
        for r in rep.results:
            if r.obs_id in changed and r.status == "replaced":
                r.error = f"source changed: {changed[r.obs_id]}"
        rep.results[:0] = kept.results
        report.collections[name] = rep


def _stored_collection(radi: RadiObject, name: str) -> VolumeCollection:
    return VolumeCollection(files.join(radi.uri, "collections", name), storage=radi.location.storage)


def _split_stored(
    name: str, coll: VolumeCollection, tasks: list[VolumeTask], changed: dict[str, str], on_changed: str
) -> tuple[list[VolumeTask], IngestReport]:
    """(tasks to write: new ones, and changed ones with ``replace``; results of the others)."""
    stored = set(coll.obs_ids)
    todo, kept = [], IngestReport()
    for t in tasks:
        reason = changed.get(t.obs_id)
        if t.obs_id not in stored or (reason is not None and on_changed == "replace"):
            todo.append(t)
        elif reason is None:
            kept.results.append(ItemResult(t.obs_id, t.subject_id, "present", source=t.path))
        elif on_changed == "skip":
            kept.results.append(
                ItemResult(
                    t.obs_id,
                    t.subject_id,
                    "present",
                    source=t.path,
                    error=f"source changed, stored volume kept (on_changed=skip): {reason}",
                )
            )
        else:
            err = SourceChangedError(name, t.obs_id, t.path, f"changed since it was ingested: {reason}")
            kept.results.append(
                ItemResult(t.obs_id, t.subject_id, "failed", error=f"{type(err).__name__}: {err}", source=t.path)
            )
    return todo, kept


def _report_from_store(radi: RadiObject, name: str, tasks: list[VolumeTask], error: str) -> IngestReport:
    """After a fail-fast stop: what is committed counts as written, the rest as failed / not run."""
    try:
        done = set(VolumeCollection(files.join(radi.uri, "collections", name), storage=radi.location.storage).obs_ids)
    except Exception:  # noqa: BLE001
        done = set()
    rep = IngestReport()
    for t in tasks:
        status = "written" if t.obs_id in done else "failed"
        rep.results.append(
            ItemResult(
                t.obs_id,
                t.subject_id,
                status,
                error="" if status == "written" else f"not ingested (run stopped: {error})",
                source=t.path,
            )
        )
    return rep


def _count_labels(radi: RadiObject, report: CohortReport, progress: bool, log: Callable[[str], None] | None) -> None:
    """Records ``class_counts`` (obs) for label collections that got new volumes (only those)."""
    from radiobject.errors import RadiObjectError
    from radiobject.model.labels import record_label_counts

    changed = [n for n, rep in report.collections.items() if rep.count("written") or rep.count("replaced")]
    try:
        record_label_counts(radi, changed, progress=progress)
    except (RadiObjectError, OSError, ValueError) as exc:  # the volumes are stored; only the counts are missing
        if log:
            log(f"note: class counts not recorded ({exc}); run `radiobject labels STORE COLLECTION --count`")
