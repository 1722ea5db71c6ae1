"""The Python constructors' engine: ``RadiObject.from_files`` / ``from_niftis`` / ``from_dicoms`` and
``VolumeCollection.from_files`` / ``from_niftis`` / ``from_dicoms`` / ``from_tiffs`` are thin calls
into these functions, so every file ingest takes one path: the same tasks and validation
(``radiobject.ingest.tasks``), the same fingerprinting loader (``radiobject.ingest.sources``), the
same bulk write (``radiobject.model.bulk``: crash safe, resumable) and, for stores, the cohort
runner (``radiobject.ingest.cohort.run_ingest``: ``ingest.json`` marker, report, signals).

Unlike the CLI's cohort ingest, these constructors create a *new* store or collection
(``StoreExistsError`` when one exists) and raise the first error, typed, instead of reporting it.
A call that fails removes what it created (``model.collection_writes.NewTarget``), so nothing that
looks complete is left and a retry on the same path starts afresh.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from radiobject.errors import DuplicateIdError, StoreExistsError
from radiobject.formats.nifti import NIFTI_SUFFIXES
from radiobject.ingest.cohort import run_ingest
from radiobject.ingest.manifest import PAIRING_HINT, CohortPlan, check_pairing
from radiobject.ingest.target import COLLECTION_NAMES, check_target
from radiobject.ingest.tasks import VolumeTask, find_problems, image_geometry, to_ingest_item
from radiobject.model import building
from radiobject.model.alignment import check_alignment, file_geometry
from radiobject.model.bulk import Submitter, executor_submitter
from radiobject.model.collection import VolumeCollection
from radiobject.model.collection_writes import NewTarget
from radiobject.model.engine import register_file_engine
from radiobject.model.file_ingest import FileIngest, StoreIngest
from radiobject.model.ids import validate_collection_name, validate_id
from radiobject.model.options import WriteOptions
from radiobject.model.paths import CollectionSpec, PathSpec, expand_paths, subject_id_from_path
from radiobject.model.radi_object import RadiObject
from radiobject.model.subjects import SUBJECT, subject_table
from radiobject.storage.options import StorageOptions, as_location

__all__ = [
    "PAIRING_HINT",
    "check_pairing",
    "collection_from_files",
    "collection_tasks",
    "plan_files",
    "store_from_files",
    "store_plan",
]


def plan_files(
    name: str,
    spec: CollectionSpec,
    *,
    fmt: str = "auto",
    subject_pattern: str | None = None,
    folder_ids: bool = False,
) -> list[VolumeTask]:
    """The tasks of one collection: the one planner of the Python file constructors.

    ``spec``: a ``{subject: file}`` mapping (IDs checked here), or files / a glob / a folder with
    the IDs from the paths (``subject_id_from_path``: ``subject_pattern``, the glob's wildcards, the
    file name); ``folder_ids``: the ID is the folder's name (``VolumeCollection.from_dicoms``). For
    ``fmt="dicom"`` a folder is one series, not a folder of files. Two files with one ID are a
    ``DuplicateIdError`` naming both, before anything is read."""
    if isinstance(spec, Mapping):
        pairs = [(validate_id(str(k), f"subject ID of collection {name!r}"), os.fspath(f)) for k, f in spec.items()]
    else:
        if fmt == "dicom" and isinstance(spec, (str, os.PathLike)) and os.path.isdir(spec):
            paths = [os.fspath(spec)]
        else:
            paths = _paths(spec, fmt)
        if folder_ids:
            pairs = [(Path(p.rstrip("/")).name, p) for p in paths]
        else:
            pairs = [(subject_id_from_path(p, spec, subject_pattern), p) for p in paths]
    seen: dict[str, str] = {}
    tasks: list[VolumeTask] = []
    for sid, p in pairs:
        if sid in seen:
            raise DuplicateIdError("subject ID", sid, f"the files of collection {name!r}: {seen[sid]} and {p}")
        seen[sid] = p
        tasks.append(VolumeTask(name, sid, sid, p, fmt, row=f"{name}: {p}"))
    return tasks


def _paths(spec: PathSpec, fmt: str) -> list[str]:
    return expand_paths(spec, NIFTI_SUFFIXES) if fmt == "nifti" else expand_paths(spec)


def store_plan(
    images: Mapping[str, CollectionSpec],
    *,
    fmt: str = "auto",
    subject_pattern: str | None = None,
) -> CohortPlan:
    """The plan of a new store: :func:`plan_files` per collection (obs ID = subject ID)."""
    return CohortPlan(
        [t for name, spec in images.items() for t in plan_files(name, spec, fmt=fmt, subject_pattern=subject_pattern)]
    )


def store_from_files(
    uri: str | os.PathLike[str], images: Mapping[str, CollectionSpec], ingest: StoreIngest
) -> RadiObject:
    """A new store from image files per collection (see ``RadiObject.from_files``).

    Everything that can be checked before writing is: the store must not exist, ``obs_meta``
    is validated, every file is detected (regular, readable, the right format) and, with
    ``validate_alignment`` (both of ``ingest``), every subject's volumes share shape and affine (from the headers).
    """
    uri = as_location(uri)
    fmt, canonical = ingest.fmt, ingest.canonical
    storage = ingest.storage or StorageOptions()
    building.clear_abandoned_store(uri, storage)  # a killed constructor's leftover (see model.building)
    if check_target(uri, storage):  # a user's non-store folder with files: StoreExistsError too
        raise StoreExistsError(uri, "a radiobject store already exists here")
    meta = None if ingest.obs_meta is None else subject_table(ingest.obs_meta)  # checked before any write
    plan = store_plan(images, fmt=fmt, subject_pattern=ingest.subject_pattern)
    if ingest.tiff_series is not None:  # travels with each task: the file checks, the geometry, the read
        plan.tasks = [replace(t, tiff_series=ingest.tiff_series) for t in plan.tasks]
    if ingest.validate_alignment:
        check_pairing(plan)
    _raise_first(plan.tasks, ingest.options)
    if ingest.validate_alignment:
        by_coll: dict[str, dict[str, str]] = {}
        geo: dict[str, dict[str, tuple[tuple[int, ...], np.ndarray]]] = {}
        for t in plan.tasks:
            by_coll.setdefault(t.collection, {})[t.subject_id] = t.path
            geo.setdefault(t.collection, {})[t.subject_id] = _geometry(t, canonical)
        check_alignment(geo, paths=by_coll)
    plan.obs_meta = meta
    if meta is not None:
        from radiobject.ingest.manifest import _merge_meta
        from radiobject.model.paths import bids_sample_parts

        sids = list(dict.fromkeys(t.subject_id for t in plan.tasks))
        if sids and all(bids_sample_parts(s) for s in sids) and not set(meta[SUBJECT]) & set(sids):
            # BIDS subject x session samples (sub-01_ses-pre) and a participants table (sub-01):
            # joined on participant_id, as `radiobject ingest --subjects` does
            plan.obs_meta = _merge_meta(pd.DataFrame({SUBJECT: sids}), meta, sids)
            meta = None
    if not plan.tasks:  # nothing to write: run_ingest creates nothing either
        _run_store_ingest(uri, plan, ingest, storage, None)
        return RadiObject(uri, storage=storage)
    target = NewTarget.before(uri, storage)
    RadiObject.create(uri, options=ingest.options, storage=storage, being_built=True)  # StoreExistsError on a race
    with target.removed_on_failure():  # a failed call leaves nothing: a retry starts afresh
        pool = ThreadPoolExecutor(max_workers=(ingest.options or WriteOptions()).workers)
        try:
            _run_store_ingest(uri, plan, ingest, storage, executor_submitter(pool))
        finally:  # no write of a running item may land after the removal
            pool.shutdown(wait=True, cancel_futures=True)
        radi = RadiObject(uri, storage=storage)
        if meta is not None:  # subjects of obs_meta without a volume are kept too
            rest = meta[~meta[SUBJECT].isin(set(radi.obs_subject_ids))]
            if len(rest):
                radi.add_subjects(rest)
        building.set_building(uri, storage, None, False)
    return RadiObject(uri, storage=storage)


def _run_store_ingest(
    uri: str, plan: CohortPlan, ingest: StoreIngest, storage: StorageOptions, submitter: Submitter | None
) -> None:
    run_ingest(
        uri,
        plan,
        options=ingest.options,
        storage=storage,
        canonical=ingest.canonical,
        validate_alignment=False,  # checked above (or turned off): AlignmentError, from the headers
        fail_fast=True,
        submitter=submitter,
        progress=ingest.progress,
        raise_errors=True,
    )


def _geometry(task: VolumeTask, canonical: bool) -> tuple[tuple[int, ...], np.ndarray]:
    """(shape, affine) of what a task stores: of its chosen TIFF series when it has one."""
    if task.tiff_series is None:
        return file_geometry(task.path, task.format, canonical)
    return image_geometry(task, canonical)


def _raise_first(tasks: list[VolumeTask], options: WriteOptions | None) -> None:
    """The first invalid task (ID, duplicate, missing / non-regular / wrong-format file), typed;
    the checks of each file run under ``options.item_timeout_s`` (a stuck file: ``SourceTimeoutError``)."""
    for t in tasks:
        validate_collection_name(t.collection)
        validate_id(t.subject_id, "subject id")
        validate_id(t.obs_id, "obs_id")
    limit = (options or WriteOptions()).item_timeout_s
    _, problems = find_problems(tasks, check_files=True, item_timeout_s=limit)
    for p in problems:
        if p.reason.startswith("duplicate"):
            raise DuplicateIdError("obs_id", p.obs_id, f"collection {p.collection!r} ({p.reason})")
        raise p.as_error()


def collection_tasks(
    spec: PathSpec | Mapping[str, str], *, fmt: str = "auto", subject_pattern: str | None = None, name: str = ""
) -> list[VolumeTask]:
    """Tasks of one collection (:func:`plan_files`): files / a glob / a folder (IDs from the paths),
    or for DICOM ``{obs_id: series folder}`` / folders (obs ID = folder name)."""
    return plan_files(name, spec, fmt=fmt, subject_pattern=subject_pattern, folder_ids=fmt == "dicom")


def collection_from_files(
    uri: str | os.PathLike[str], spec: PathSpec | Mapping[str, str], ingest: FileIngest, *, name: str | None = None
) -> VolumeCollection:
    """A new collection from files (see ``VolumeCollection.from_files``): checked first, then
    written by the bulk path with the fingerprinting loader; the first failure is raised."""
    uri = as_location(uri)
    cname = name or uri.rstrip("/").rsplit("/", 1)[-1]
    tasks = collection_tasks(spec, fmt=ingest.fmt, subject_pattern=ingest.subject_pattern, name=cname)
    if ingest.dicom_options:
        tasks = [replace(t, dicom_options=dict(ingest.dicom_options)) for t in tasks]
    if ingest.tiff_series is not None:
        tasks = [replace(t, tiff_series=ingest.tiff_series) for t in tasks]
    _raise_first(tasks, ingest.options)
    storage, options = ingest.storage, ingest.options
    if check_target(uri, storage or StorageOptions(), marker="collection.json", allowed=COLLECTION_NAMES):
        raise StoreExistsError(uri, "a collection already exists here")
    storage = storage or StorageOptions()
    target = NewTarget.before(uri, storage)
    coll = VolumeCollection.create(uri, name=name, options=options, storage=storage)  # ours from here on
    with target.removed_on_failure():  # a failed call leaves nothing: a retry starts afresh
        coll.write([to_ingest_item(t, ingest.canonical) for t in tasks], options=options, progress=ingest.progress)
        coll.compact()
    return coll


register_file_engine(collection_from_files=collection_from_files, store_from_files=store_from_files)
