"""Ingest tasks: one planned volume per row, format detection, loading, and cohort validation.

A :class:`VolumeTask` is a plain, picklable description (paths and IDs, no pixels). Validation
turns bad rows into :class:`Problem` s (reported per item with the reason) and leaves the rest to
be written; :func:`to_ingest_item` makes the store's :class:`~radiobject.model.bulk.IngestItem` with a
lazy loader (a module-level ``partial``, so it travels to worker processes and Dask workers).

The checks that open a file (format detection, headers for alignment) run each file under the
per-item deadline (``item_timeout_s``, default ``$RADIOBJECT_ITEM_TIMEOUT`` else 900 s): a file
whose check blocks (a hung mount) becomes a :class:`Problem` of its own task, never a hang of the
cohort (``radiobject.model.bulk.call_within``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np

from radiobject.errors import ImageReadError, SourceTimeoutError
from radiobject.formats.detect import FORMATS, canonicalize, detect_format
from radiobject.formats.detect import read_image as load_image
from radiobject.formats.image import ImageData
from radiobject.formats.inputs import regular_file_size
from radiobject.ingest.sources import load_fingerprinted, read_source
from radiobject.model.alignment import misalignment
from radiobject.model.bulk import IngestItem, call_within
from radiobject.model.ids import validate_collection_name, validate_id
from radiobject.model.options import default_item_timeout, item_timeout

__all__ = [
    "FORMATS",
    "Problem",
    "VolumeTask",
    "canonicalize",
    "detect_format",
    "find_problems",
    "image_geometry",
    "load_image",
    "to_ingest_item",
]

#: Formats the ingest reads; ``auto`` detects from the file content.


@dataclass(frozen=True)
class VolumeTask:
    """One volume to ingest.

    Attributes:
        collection: target collection name.
        subject_id: ``obs_subject_id``.
        obs_id: volume ID inside the collection (defaults to the subject ID).
        path: a file, or a folder (one DICOM series).
        format: one of :data:`FORMATS`.
        files: for DICOM series found by discovery, the member files (else empty).
        columns: extra ``obs`` columns of this volume.
        row: where it came from (manifest row number, glob, series key) for messages.
    """

    collection: str
    subject_id: str
    obs_id: str
    path: str
    format: str = "auto"
    files: tuple[str, ...] = ()
    columns: dict[str, Any] = field(default_factory=dict)
    row: str = ""
    #: facts stored with the volume besides its file's own (e.g. DWI ``bvals`` / ``bvecs``).
    metadata: dict[str, Any] = field(default_factory=dict)
    #: keyword options of the DICOM reader (``read_dicom_series``), e.g. ``philips_scaling``.
    dicom_options: dict[str, Any] = field(default_factory=dict)
    #: the series of a TIFF that holds several images (``None``: its one image series, else an error).
    tiff_series: int | None = None


@dataclass(frozen=True)
class Problem:
    """A task that will not be written, and why (shown in the summary and the JSON report)."""

    collection: str
    subject_id: str
    obs_id: str
    source: str
    reason: str
    #: the item time limit (seconds) when the check of this task did not finish within it
    timed_out_s: float | None = None

    def as_error(self) -> ImageReadError:
        """The typed error of this problem: ``SourceTimeoutError`` for a check past the time limit,
        ``ImageReadError`` naming the source and the reason otherwise."""
        if self.timed_out_s is not None:
            return SourceTimeoutError(self.source, self.timed_out_s, "checking the file")
        return ImageReadError(self.source, self.reason)


def image_geometry(task: VolumeTask, canonical: bool = False) -> tuple[tuple[int, ...], np.ndarray]:
    """(spatial shape, affine) of a task's image: NIfTI / TIFF from the header, DICOM by reading."""
    fmt = detect_format(task.path) if task.format == "auto" else task.format
    if fmt == "nifti":
        from radiobject.formats.nifti import load_header

        img = load_header(task.path)
        if canonical:
            import nibabel as nib

            img = nib.as_closest_canonical(img)
        shape = tuple(int(s) for s in img.shape[:3])
        return shape + (1,) * (3 - len(shape)), np.asarray(img.affine, dtype=np.float64)
    # the geometry of what is stored (a tilt-corrected series, the chosen TIFF series); TIFF stays lazy
    image = read_source(task.path, fmt, False, task.files, dict(task.dicom_options) or None, task.tiff_series)
    shape = tuple(int(s) for s in image.shape[:3])
    return _canonical_geometry(shape, image.affine) if canonical else (shape, image.affine)


def _canonical_geometry(shape: tuple[int, ...], affine: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine after ``canonicalize``, computed without touching pixels."""
    from nibabel.orientations import inv_ornt_aff, io_orientation

    ornt = io_orientation(affine)
    new_shape = [0, 0, 0]
    for axis, (world, _) in enumerate(ornt):
        new_shape[int(world)] = shape[axis]
    return tuple(new_shape), affine @ inv_ornt_aff(ornt, shape)


def to_ingest_item(task: VolumeTask, canonical: bool = False) -> IngestItem:
    """The store's lazy ``IngestItem`` for a task (pixels are read when it is written)."""
    # reads the image and records its source fingerprint (radiobject.ingest.sources)
    loader: Callable[[], ImageData] = partial(
        load_fingerprinted,
        task.path,
        task.format,
        canonical,
        tuple(task.files),
        dict(task.dicom_options) or None,
        task.tiff_series,
    )
    if task.metadata:
        loader = partial(_with_metadata, loader, dict(task.metadata))
    source = os.path.abspath(task.path)
    return IngestItem(task.obs_id, task.subject_id, loader, dict(task.columns), source)


def _with_metadata(load: Callable[[], ImageData], extra: dict[str, Any]) -> ImageData:
    image = load()
    return ImageData(image.array, image.affine, {**image.metadata, **extra}, image.source)


class _TimedOut(str):
    """A problem text that records the time limit the check ran past."""

    limit_s: float


def _problem(t: VolumeTask, reason: str) -> Problem:
    limit = reason.limit_s if isinstance(reason, _TimedOut) else None
    source = os.path.abspath(t.path) if t.path else t.row
    return Problem(t.collection, t.subject_id, t.obs_id, source, str(reason), timed_out_s=limit)


def _check_ids(tasks: Iterable[VolumeTask]) -> tuple[list[VolumeTask], list[Problem]]:
    ok: list[VolumeTask] = []
    bad: list[Problem] = []
    for t in tasks:
        try:
            validate_collection_name(t.collection)
            validate_id(t.subject_id, "subject id")
            validate_id(t.obs_id, "obs_id")
        except ValueError as exc:
            bad.append(_problem(t, str(exc)))
            continue
        ok.append(t)
    return ok, bad


def _check_duplicates(tasks: list[VolumeTask]) -> tuple[list[VolumeTask], list[Problem]]:
    groups: dict[tuple[str, str], list[VolumeTask]] = defaultdict(list)
    for t in tasks:
        groups[(t.collection, t.obs_id)].append(t)
    ok, bad = [], []
    for t in tasks:
        dup = groups[(t.collection, t.obs_id)]
        if len(dup) > 1:  # the message names at most 3 rows: bounded whatever the count
            others = ", ".join(d.row or d.path for d in dup[:3]) + (f" and {len(dup) - 3} more" if len(dup) > 3 else "")
            bad.append(
                _problem(
                    t,
                    f"duplicate: {len(dup)} rows for subject {t.subject_id!r} / obs_id {t.obs_id!r} "
                    f"in collection {t.collection!r} ({others}); none ingested",
                )
            )
        else:
            ok.append(t)
    return ok, bad


def _bounded(fn: Callable[[VolumeTask], Any], limit_s: float | None, what: str) -> Callable[[VolumeTask], Any]:
    """``fn`` under the per-item deadline; a timeout becomes the task's problem text."""

    def run(t: VolumeTask) -> Any:
        try:
            return call_within(partial(fn, t), limit_s, os.path.abspath(t.path) if t.path else t.row, what)
        except SourceTimeoutError as exc:
            text = _TimedOut(f"{type(exc).__name__}: {exc}")  # the report's text names the file
            text.limit_s = exc.limit_s
            return text

    return run


def _check_paths(
    tasks: list[VolumeTask], workers: int, limit_s: float | None = None
) -> tuple[list[VolumeTask], list[Problem]]:
    def check(t: VolumeTask) -> str | None:
        if t.files:
            missing = [f for f in t.files if not os.path.exists(f)]
            if missing:
                return f"{len(missing)} series file(s) missing, e.g. {missing[0]}"
            for f in t.files:  # a FIFO / device among the series files is never opened
                try:
                    regular_file_size(f)
                except ImageReadError as exc:
                    return f"{exc.path}: {exc.reason}"
            return None
        try:
            fmt = detect_format(t.path)
        except ImageReadError as exc:
            return exc.reason
        if t.format not in ("auto", fmt):
            return f"wrong format: expected {t.format}, the content is {fmt}"
        if fmt == "tiff":  # tags only: a file of several image series and none chosen is refused here
            from radiobject.formats.tiff import tiff_info

            try:
                tiff_info(t.path, t.tiff_series)
            except ImageReadError as exc:
                return exc.reason
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = list(pool.map(_bounded(check, limit_s, "checking the file"), tasks))
    ok = [t for t, r in zip(tasks, reasons, strict=True) if r is None]
    bad = [_problem(t, r) for t, r in zip(tasks, reasons, strict=True) if r is not None]
    return ok, bad


def _check_alignment(
    tasks: list[VolumeTask], canonical: bool, workers: int, atol: float, limit_s: float | None = None
) -> tuple[list[VolumeTask], list[Problem]]:
    by_subject: dict[str, list[VolumeTask]] = defaultdict(list)
    for t in tasks:
        by_subject[t.subject_id].append(t)
    multi = [t for ts in by_subject.values() if len({x.collection for x in ts}) > 1 for t in ts]

    def geo(t: VolumeTask) -> tuple[tuple[int, ...], np.ndarray] | str:
        try:
            return image_geometry(t, canonical)
        except Exception as exc:  # noqa: BLE001 - reported per item
            return f"unreadable header: {exc}"

    with ThreadPoolExecutor(max(1, workers)) as pool:
        found = dict(
            zip([id(t) for t in multi], pool.map(_bounded(geo, limit_s, "reading the header"), multi), strict=True)
        )
    failed_subjects: dict[str, str] = {}
    header_errors: dict[int, str] = {}
    for sid, ts in by_subject.items():
        volumes = []
        for t in ts:
            g = found.get(id(t))
            if isinstance(g, str):
                header_errors[id(t)] = g
            elif g is not None:
                volumes.append((t.collection, f" ({t.path})", g[0], g[1]))
        reason = misalignment(volumes, atol)
        if reason is not None:
            failed_subjects[sid] = f"misaligned: {reason}"
    ok, bad = [], []
    for t in tasks:
        if id(t) in header_errors:
            bad.append(_problem(t, header_errors[id(t)]))
        elif t.subject_id in failed_subjects:
            bad.append(_problem(t, failed_subjects[t.subject_id]))
        else:
            ok.append(t)
    return ok, bad


def find_problems(
    tasks: Sequence[VolumeTask],
    *,
    validate_alignment: bool = False,
    canonical: bool = False,
    check_files: bool = True,
    workers: int = 4,
    atol: float = 1e-4,
    item_timeout_s: float | Literal["default"] | None = "default",
) -> tuple[list[VolumeTask], list[Problem]]:
    """Splits tasks into (to write, problems): invalid IDs, duplicate subject/collection rows,
    missing / unreadable / wrong-format files (a TIFF of several image series and none chosen too)
    and, with ``validate_alignment``, subjects whose volumes differ in shape or affine (every
    volume of such a subject is held back, so no image is stored without its label). Order of the
    remaining tasks is kept.

    ``item_timeout_s``: seconds each file's check may take (``"default"``:
    ``$RADIOBJECT_ITEM_TIMEOUT``, else 900 s; ``None``: no limit); a check past it is a problem
    of that task (``SourceTimeoutError``), the others go on."""
    limit_s = default_item_timeout() if item_timeout_s == "default" else item_timeout(item_timeout_s)
    ok, problems = _check_ids(tasks)
    ok, bad = _check_duplicates(ok)
    problems += bad
    if check_files:
        ok, bad = _check_paths(ok, workers, limit_s)
        problems += bad
    if validate_alignment:
        ok, bad = _check_alignment(ok, canonical, workers, atol, limit_s)
        problems += bad
    return ok, problems
