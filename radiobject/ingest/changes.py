"""Stored volumes against their sources: what a re-ingest must replace, and ``verify --sources``.

:func:`changed_sources` is the re-ingest's check (per collection, for the planned volumes that are
already stored): a volume whose source files changed, were added, or vanished since it was ingested
is *changed*; what happens to it is the ingest's ``on_changed`` (``replace`` — the default — a new
version published atomically, ``error`` — a failed item with a ``SourceChangedError``, or
``skip`` — kept, and said so). :func:`verify_sources` lists every stored volume of a store whose
sources changed or vanished (hashing every source by default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from radiobject.errors import ImageReadError, RadiObjectError, SourceTimeoutError
from radiobject.ingest.sources import compare, recorded_paths, source_files
from radiobject.ingest.tasks import VolumeTask
from radiobject.model.bulk import call_within
from radiobject.model.collection import VolumeCollection
from radiobject.model.radi_object import RadiObject
from radiobject.storage import files

__all__ = ["ON_CHANGED", "SourceFinding", "changed_sources", "source_record", "verify_sources"]

#: What a re-ingest does with a stored volume whose sources changed.
ON_CHANGED: tuple[str, ...] = ("replace", "error", "skip")


@dataclass(frozen=True)
class SourceFinding:
    """One stored volume whose sources no longer match what was ingested."""

    collection: str
    obs_id: str
    obs_subject_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.collection}/{self.obs_id}: {self.reason}"


def source_record(metadata: Any) -> dict[str, Any] | None:
    """The ``sources`` fingerprint of an ``obs`` row's ``metadata`` (JSON text or dict), if any."""
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata) if metadata else {}
        except ValueError:
            return None
    if not isinstance(metadata, Mapping):
        return None
    record = metadata.get("sources")
    return dict(record) if isinstance(record, Mapping) and record.get("files") else None


_Stored = dict[str, tuple[str, dict[str, Any] | None]]


def _records(coll: VolumeCollection, obs_ids: Sequence[str] | None = None) -> _Stored:
    """``{obs_id: (subject, source record or None)}`` from the collection's ``obs`` table."""
    obs = coll.obs
    if "metadata" not in obs.columns:
        return {}
    want = None if obs_ids is None else set(obs_ids)
    out: _Stored = {}
    rows = zip(obs["obs_id"].tolist(), obs["obs_subject_id"].tolist(), obs["metadata"].tolist(), strict=True)
    for oid, sid, meta in rows:
        if want is None or oid in want:
            out[str(oid)] = (str(sid), source_record(meta))
    return out


def changed_sources(
    coll: VolumeCollection,
    tasks: Sequence[VolumeTask],
    *,
    rehash: bool = False,
    workers: int = 4,
    item_timeout_s: float | None = None,
) -> dict[str, str]:
    """``{obs_id: reason}`` for the tasks whose volume is stored but whose sources changed.

    Volumes ingested without a fingerprint (in-memory images, older stores) are never reported.
    ``rehash=True`` hashes every source (default: only those whose size or mtime differ). Each
    comparison runs under ``item_timeout_s`` (``WriteOptions.item_timeout_s``): a source that does
    not answer in time is reported as changed ("timed out"), so its write is tried, under the same
    limit, and fails that subject alone with ``SourceTimeoutError``.
    """
    stored = _records(coll, [t.obs_id for t in tasks])
    todo = [(t, stored[t.obs_id][1]) for t in tasks if t.obs_id in stored and stored[t.obs_id][1] is not None]

    def check(item: tuple[VolumeTask, dict[str, Any] | None]) -> str | None:
        task, record = item
        assert record is not None
        try:
            return call_within(
                lambda: compare(record, source_files(task.path, task.files), rehash=rehash),
                item_timeout_s,
                task.path,
                "comparing with its stored fingerprint",
            )
        except SourceTimeoutError as exc:
            return f"timed out: {exc.reason}"
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a damaged record: write it again
            return f"the stored source record cannot be read ({type(exc).__name__}: {exc})"
        except ImageReadError as exc:  # the planned source cannot be listed: its write will fail and say so
            return f"{exc.path}: {exc.reason}"

    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = list(pool.map(check, todo))
        found = {t.obs_id: r for (t, _), r in zip(todo, reasons, strict=True) if r is not None}
        kept = [oid for oid in dict.fromkeys(t.obs_id for t in tasks) if oid in stored and oid not in found]
        missing = list(pool.map(partial(_array_problem, coll, item_timeout_s), kept))
    found.update({oid: r for oid, r in zip(kept, missing, strict=True) if r is not None})
    return found


def _array_problem(coll: VolumeCollection, limit_s: float | None, obs_id: str) -> str | None:
    """Why the stored array of ``obs_id`` cannot be read (deleted, damaged), else None: a re-ingest
    writes such a volume again instead of counting it as present. Reads one voxel."""
    try:
        vol = coll.volume(obs_id)
        call_within(
            lambda: vol.read(tuple(slice(0, 1) for _ in vol.shape)), limit_s, vol.uri, "reading the stored array"
        )
    except RadiObjectError as exc:
        return f"its stored array cannot be read ({exc})"
    return None


def verify_sources(
    radi: RadiObject | VolumeCollection, *, rehash: bool = True, workers: int = 4
) -> list[SourceFinding]:
    """Every stored volume of a store (or of one collection) whose recorded sources changed or
    vanished (``verify --sources``).

    ``rehash=False`` compares only size and mtime (fast, misses an edit that kept both).
    """
    findings: list[SourceFinding] = []
    colls = (
        [VolumeCollection(radi.uri, storage=radi.location.storage)]
        if isinstance(radi, VolumeCollection)
        else [
            VolumeCollection(files.join(radi.uri, "collections", n), storage=radi.location.storage)
            for n in radi.collection_names
        ]
    )
    for coll in colls:
        name = coll.name
        records = _records(coll)  # every stored volume, also one whose subject row is missing
        todo = [(oid, sid, rec) for oid, (sid, rec) in records.items() if rec is not None]

        def check(item: tuple[str, str, dict[str, Any] | None]) -> str | None:
            rec = item[2]
            assert rec is not None
            try:
                return compare(rec, recorded_paths(rec), rehash=rehash)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a damaged / tampered record
                return f"the stored source record cannot be read ({type(exc).__name__}: {exc})"

        with ThreadPoolExecutor(max(1, workers)) as pool:
            reasons = list(pool.map(check, todo))
        findings += [SourceFinding(name, oid, sid, r) for (oid, sid, _), r in zip(todo, reasons, strict=True) if r]
    return findings
