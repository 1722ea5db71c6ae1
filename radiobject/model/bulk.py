"""Writing many volumes into one collection: parallel, committed in fragments, resumable.

Each item is written by :func:`write_one` (the store's single write path, ``write_image``) on an
executor — threads by default, or any ``(submit, as_completed)`` pair: a process pool, a Dask
client. The caller commits the returned ``obs`` rows in input order, ``commit_every`` at a time,
only after their arrays are complete: a volume becomes visible when its row is committed, so a
crash leaves at most unreferenced versions (removed by ``collect_garbage``), and ``skip_existing``
makes a re-run finish only what is missing. Every write is a new version path; each commit holds
the collection's write lock and re-checks which obs IDs exist (see ``radiobject.model.versions``).

Stuck sources: each item's source is read (loaded and decoded) under a deadline,
``WriteOptions.item_timeout_s`` (:func:`load_within`), before anything of it is written. The read
runs in a daemon thread; past the deadline the item fails with ``SourceTimeoutError`` naming the
file and the limit, its worker goes on with the next item, and the stuck thread is abandoned (it
only reads: whatever it returns later is dropped). With a process pool the same happens inside
the worker process; the worker is not killed, since terminating one worker breaks the whole pool
(``BrokenProcessPool``) for the items it did not run, and the abandoned thread ends with its
process when the pool shuts down.
"""

from __future__ import annotations

import math
import pickle
import threading
import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures import as_completed as futures_as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radiobject._os.interrupts import raise_if_stopped
from radiobject.errors import DuplicateIdError, RadiObjectError, SourceTimeoutError
from radiobject.formats.image import ImageData
from radiobject.model.ids import validate_id
from radiobject.model.options import WriteOptions
from radiobject.model.versions import LAYOUT, new_version, record_superseded, relative, volume_uri
from radiobject.model.volume_info import CATALOG_COLUMNS, VolumeInfo
from radiobject.model.writer import write_image
from radiobject.storage import files
from radiobject.storage.files import join
from radiobject.storage.locks import write_lock
from radiobject.storage.options import StorageOptions
from radiobject.storage.registry import get_backend
from radiobject.storage.tables import FragmentTable

Loader = Callable[[], ImageData]
#: ``submit(fn, *args) -> future`` and ``as_completed(futures) -> iterator`` (concurrent.futures or Dask).
Submitter = tuple[Callable[..., Any], Callable[[Sequence[Any]], Iterable[Any]]]


@dataclass(frozen=True)
class IngestItem:
    """One volume to write: its IDs, how to load it (lazily), extra ``obs`` columns."""

    obs_id: str
    obs_subject_id: str
    load: Loader | ImageData
    columns: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def image(self) -> ImageData:
        return self.load if isinstance(self.load, ImageData) else self.load()


@dataclass
class ItemResult:
    """What happened to one item: ``status`` is ``written``, ``present`` or ``failed``."""

    obs_id: str
    obs_subject_id: str
    status: str
    seconds: float = 0.0
    nbytes: int = 0
    error: str = ""
    source: str = ""


@dataclass
class IngestReport:
    """Per-item outcome of a bulk write."""

    results: list[ItemResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if r.status == "failed"]

    def extend(self, other: IngestReport) -> None:
        self.results.extend(other.results)


@dataclass
class VolumeWritten:
    """What a worker sends back for one item: its ``obs`` row, or the error text."""

    obs_id: str
    row: dict[str, Any] | None
    seconds: float
    nbytes: int
    error: str = ""
    exception: BaseException | None = None  # the original, when it pickles (re-raised typed)


def obs_row(info: VolumeInfo, item: IngestItem) -> dict[str, Any]:
    """The ``obs`` row of a written volume: catalog facts then the user's columns."""
    row = info.to_row()
    row["obs_subject_id"] = item.obs_subject_id
    for k, v in item.columns.items():
        if k in CATALOG_COLUMNS:
            raise RadiObjectError(f"obs column {k!r} of {item.obs_id!r} is reserved")
        row[k] = v
    return row


def call_within(fn: Callable[[], Any], limit_s: float | None, path: str, what: str = "reading") -> Any:
    """``fn()`` with a deadline: its result, or its exception re-raised; ``SourceTimeoutError``
    naming ``path`` and the limit when it has not returned after ``limit_s`` seconds (``None``: no
    limit, called directly). ``fn`` runs in a daemon thread that is abandoned at the deadline, so
    it must not write anything a later step relies on (a read)."""
    if limit_s is None:
        return fn()
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"radiobject-read {path}"[:100], daemon=True).start()
    if not done.wait(limit_s):
        raise SourceTimeoutError(path, limit_s, what)
    if "error" in box:
        raise box["error"]
    return box["value"]


def load_within(item: IngestItem, limit_s: float | None) -> ImageData:
    """The item's image, read under the deadline ``limit_s`` (see :func:`call_within`); an
    in-memory image is returned as is."""
    if isinstance(item.load, ImageData):
        return item.load
    image: ImageData = call_within(item.load, limit_s, item.source or f"obs_id {item.obs_id!r}")
    return image


def write_one(
    collection_uri: str,
    item: IngestItem,
    backend: str,
    storage: StorageOptions,
    options: WriteOptions,
    layout: int = LAYOUT,
) -> VolumeWritten:
    """Loads and writes one item as a new version ``volumes/<obs_id>/<version>``; runs in any worker.

    The path is new, so nothing a reader can see changes until the caller commits the row.
    A symbolic link anywhere below the collection fails the item (``UnsafePathError``). The source
    is read first, under ``options.item_timeout_s`` (:func:`load_within`): an item whose read fails
    or times out has written nothing.
    """
    t0 = time.perf_counter()
    try:
        image = load_within(item, options.item_timeout_s)
        version = new_version()
        uri = volume_uri(collection_uri, item.obs_id, version, layout)
        files.check_no_symlinks(collection_uri, uri)
        be = get_backend(backend, storage)
        if layout >= 2 and backend == "zarr":
            group = join(collection_uri, "volumes", item.obs_id)
            if not files.exists(join(group, "zarr.json"), storage):  # keeps the tree a Zarr hierarchy
                be.create_group(group, {"radiobject": {"kind": "volume", "obs_id": item.obs_id}})
        info = write_image(uri, image, be, options, item.obs_id, version)
        row = obs_row(info, item)
    except Exception as exc:  # noqa: BLE001 - reported per item
        error, original = f"{type(exc).__name__}: {exc}", exc if _pickles(exc) else None
        return VolumeWritten(item.obs_id, None, time.perf_counter() - t0, 0, error, original)
    nbytes = math.prod(info.shape) * np.dtype(info.dtype).itemsize
    return VolumeWritten(item.obs_id, row, time.perf_counter() - t0, nbytes)


def _pickles(exc: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure means: send the text only
        return False
    return True


def executor_submitter(executor: Executor) -> Submitter:
    """The ``(submit, as_completed)`` pair of a ``concurrent.futures`` executor."""
    return executor.submit, futures_as_completed


def checked_items(collection_uri: str, items: Iterable[IngestItem]) -> list[IngestItem]:
    """``items`` as a list; ``TypeError`` (before anything is written) unless each is an ``IngestItem``."""
    hint = "build IngestItem(obs_id, subject_id, image) entries, or use from_images for a mapping of ID to ImageData"
    if isinstance(items, (Mapping, str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(
            f"a write to {collection_uri} takes an iterable of IngestItem, not a {type(items).__name__}; {hint}"
        )
    out = list(items)
    for item in out:
        if not isinstance(item, IngestItem):
            raise TypeError(
                f"a write to {collection_uri} takes IngestItem entries, got {type(item).__name__} {item!r:.80}; {hint}"
            )
    return out


def _plan(
    collection_uri: str,
    items: Iterable[IngestItem],
    existing: Container[str],
    skip_existing: bool,
    replace_existing: bool = False,
) -> tuple[list[IngestItem], IngestReport]:
    """Validates IDs, rejects duplicates, and sets aside what is already committed."""
    report, seen, todo = IngestReport(), set(), []
    for item in checked_items(collection_uri, items):
        validate_id(item.obs_id, "obs_id")
        validate_id(item.obs_subject_id, "subject id")
        if item.obs_id in seen:
            raise RadiObjectError(f"obs_id {item.obs_id!r} appears twice in this write to {collection_uri}")
        seen.add(item.obs_id)
        if item.obs_id in existing and not replace_existing:
            if not skip_existing:
                raise RadiObjectError(f"obs_id {item.obs_id!r} already exists in {collection_uri}")
            report.results.append(ItemResult(item.obs_id, item.obs_subject_id, "present", source=item.source))
        else:
            todo.append(item)
    return todo, report


def write_items(
    collection_uri: str,
    items: Iterable[IngestItem],
    backend: str,
    storage: StorageOptions,
    options: WriteOptions,
    *,
    existing: Container[str] = frozenset(),
    skip_existing: bool = False,
    replace_existing: bool = False,
    on_error: str = "raise",
    progress: bool | str = False,
    on_commit: Callable[[list[dict[str, Any]]], None] | None = None,
    submitter: Submitter | None = None,
    layout: int = LAYOUT,
) -> IngestReport:
    """Writes ``items`` as volumes of the collection at ``collection_uri``.

    ``existing``: obs IDs already committed (a hint; the commit checks again under the write
    lock, so a volume committed meanwhile by another process is seen). An obs ID that exists is
    replaced with ``replace_existing`` (status ``replaced``; the old version is superseded),
    skipped with ``skip_existing`` (status ``present``), else an error (``DuplicateIdError``).
    ``on_error="collect"`` records failures and goes on; ``"raise"`` stops at the first failure
    (after committing the complete prefix) with a ``RadiObjectError`` naming the item.
    ``on_commit`` sees each committed batch of rows. ``submitter``: where items are written
    (default: ``options.workers`` threads in this process).
    """
    todo, report = _plan(collection_uri, items, existing, skip_existing, replace_existing)
    run = _Run(collection_uri, backend, storage, options, layout, skip_existing, replace_existing, on_commit)
    if submitter is None:
        with ThreadPoolExecutor(max_workers=options.workers) as pool:
            return run(todo, report, executor_submitter(pool), on_error, progress)
    return run(todo, report, submitter, on_error, progress)


class _Run:
    """One bulk write: workers write arrays; this process commits rows in input order."""

    def __init__(
        self,
        collection_uri: str,
        backend: str,
        storage: StorageOptions,
        options: WriteOptions,
        layout: int,
        skip_existing: bool,
        replace_existing: bool,
        on_commit: Callable[[list[dict[str, Any]]], None] | None,
    ) -> None:
        self.uri, self.backend, self.storage, self.options, self.layout = (
            collection_uri,
            backend,
            storage,
            options,
            layout,
        )
        self.skip_existing, self.replace_existing, self.on_commit = skip_existing, replace_existing, on_commit
        self.table = FragmentTable(join(collection_uri, "obs"), "obs_id", storage)

    def commit(self, pending: list[dict[str, Any]], results: dict[str, ItemResult]) -> BaseException | None:
        """Publishes ``pending`` rows under the write lock; returns the first conflict (or None)."""
        if not pending:
            return None
        conflict: BaseException | None = None
        with write_lock(self.uri, self.storage):
            current = self.table.live_values("version")  # fresh: other writers' commits included
            keep, superseded = [], []
            for row in pending:
                oid = row["obs_id"]
                if oid not in current:
                    keep.append(row)
                elif self.replace_existing:
                    keep.append(row)
                    results[oid].status = "replaced"
                    old = volume_uri(self.uri, oid, str(current[oid]), self.layout)
                    if self.layout >= 2 and current[oid] != row["version"]:
                        superseded.append(relative(self.uri, old))
                else:  # committed meanwhile by another writer: ours is discarded, never published
                    if self.layout >= 2:
                        files.remove(
                            volume_uri(self.uri, oid, row["version"], self.layout), self.storage, root=self.uri
                        )
                    res = results[oid]
                    if self.skip_existing:
                        res.status = "present"
                    else:
                        res.status, res.error = "failed", f"obs_id {oid!r} was committed meanwhile by another writer"
                        conflict = conflict or DuplicateIdError("obs_id", oid, f"collection {self.uri}")
            record_superseded(self.uri, self.storage, superseded)  # before the commit: no orphan on a crash
            if keep:
                self.table.append(pd.DataFrame(keep))
        if keep and self.on_commit is not None:
            self.on_commit(list(keep))
        pending.clear()
        return conflict

    def __call__(
        self, todo: list[IngestItem], report: IngestReport, submitter: Submitter, on_error: str, progress: bool | str
    ) -> IngestReport:
        submit, as_completed = submitter
        futures = [
            submit(write_one, self.uri, it, self.backend, self.storage, self.options, self.layout) for it in todo
        ]
        position = {f: i for i, f in enumerate(futures)}
        finished: dict[int, dict[str, Any] | None] = {}  # input position -> row (None: failed)
        pending: list[dict[str, Any]] = []
        results: dict[str, ItemResult] = {}
        next_pos, first_error, first_exc = 0, "", None

        desc = progress if isinstance(progress, str) else self.uri.rsplit("/", 1)[-1]
        bar = tqdm(total=len(todo), desc=desc, unit="vol", disable=not progress)
        for fut in as_completed(futures):
            pos = position[fut]
            item = todo[pos]
            try:
                res: VolumeWritten = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died or could not run the task
                res = VolumeWritten(item.obs_id, None, 0.0, 0, f"{type(exc).__name__}: {exc}")
            bar.update(1)
            raise_if_stopped()  # a Ctrl-C / SIGTERM whose KeyboardInterrupt a library swallowed
            finished[pos] = res.row
            status = "failed" if res.row is None else "written"
            result = ItemResult(
                item.obs_id, item.obs_subject_id, status, res.seconds, res.nbytes, res.error, item.source
            )
            report.results.append(result)
            results[item.obs_id] = result
            if res.row is None and not first_error:
                first_error = f"{item.obs_id} ({item.source or 'in memory'}): {res.error}"
                first_exc = res.exception
            while next_pos in finished:  # commit in input order: deterministic obs order
                row = finished.pop(next_pos)
                next_pos += 1
                if row is not None:
                    pending.append(row)
                    if len(pending) >= self.options.commit_every:
                        conflict = self.commit(pending, results)
                        if conflict is not None and not first_error:
                            first_error, first_exc = str(conflict), conflict
            if first_error and on_error == "raise":
                for f in futures:
                    f.cancel()
                break
        conflict = self.commit(pending, results)
        if conflict is not None and not first_error:
            first_error, first_exc = str(conflict), conflict
        bar.close()
        if first_error and on_error == "raise":
            if isinstance(first_exc, Exception):
                raise first_exc
            raise RadiObjectError(f"writing {self.uri} stopped at the first failure: {first_error}")
        return report
