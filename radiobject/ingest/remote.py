"""Writing volumes in other processes (a process pool or Dask workers); the caller commits.

A worker runs :func:`write_volume`: the store's single write path (``radiobject.writer.write_image``)
for one item, returning the volume's ``obs`` row (``radiobject.bulk.obs_row``). The caller commits
rows to the collection's ``obs`` table in input order, in batches of ``commit_every``, only after
their arrays are complete: the same crash-safety rule as ``radiobject.bulk.write_items`` and the
same ``obs`` order as a serial ingest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from radiobject.bulk import IngestItem, IngestReport, ItemResult, obs_row
from radiobject.errors import RadiObjectError
from radiobject.ids import validate_id
from radiobject.options import WriteOptions
from radiobject.storage import files
from radiobject.storage.options import StorageOptions
from radiobject.storage.registry import get_backend
from radiobject.storage.tables import FragmentTable
from radiobject.writer import write_image

__all__ = ["VolumeWritten", "write_volume", "write_collection_remote"]


@dataclass
class VolumeWritten:
    """What a worker sends back: the ``obs`` row, or the error text."""

    obs_id: str
    row: dict[str, Any] | None
    seconds: float
    nbytes: int
    error: str = ""


def write_volume(
    collection_uri: str, item: IngestItem, backend: str, storage: StorageOptions, options: WriteOptions
) -> VolumeWritten:
    """Loads and writes one item as ``collection_uri/volumes/<obs_id>`` (runs in a worker)."""
    t0 = time.perf_counter()
    try:
        image = item.image()
        info = write_image(files.join(collection_uri, "volumes", item.obs_id), image,
                           get_backend(backend, storage), options, item.obs_id)
        row = obs_row(info, item)
    except Exception as exc:  # noqa: BLE001 - reported per item (exceptions may not pickle)
        return VolumeWritten(item.obs_id, None, time.perf_counter() - t0, 0, f"{type(exc).__name__}: {exc}")
    nbytes = int(image.dtype.itemsize) * math.prod(info.shape)
    return VolumeWritten(item.obs_id, row, time.perf_counter() - t0, nbytes)


#: ``submit(fn, *args) -> future``; ``as_completed(futures) -> iterator`` (concurrent.futures or Dask).
Submit = Callable[..., Any]
AsCompleted = Callable[[Sequence[Any]], Iterable[Any]]


def write_collection_remote(
    collection_uri: str,
    items: Iterable[IngestItem],
    backend: str,
    storage: StorageOptions,
    options: WriteOptions,
    submit: Submit,
    as_completed: AsCompleted,
    *,
    existing: frozenset[str] = frozenset(),
    skip_existing: bool = True,
    on_error: str = "collect",
    progress: bool | str = False,
) -> IngestReport:
    """Writes ``items`` through ``submit`` (a process pool's or a Dask client's) and commits rows.

    Same contract as ``radiobject.bulk.write_items``: ``existing`` obs IDs are skipped with
    ``skip_existing`` (an error otherwise); ``on_error="raise"`` raises after committing the
    complete prefix.
    """
    table = FragmentTable(files.join(collection_uri, "obs"), "obs_id", storage)
    report = IngestReport()
    todo: list[IngestItem] = []
    seen: set[str] = set()
    for item in items:
        validate_id(item.obs_id, "obs_id")
        validate_id(item.obs_subject_id, "subject id")
        if item.obs_id in seen:
            raise RadiObjectError(f"obs_id {item.obs_id!r} appears twice in this write to {collection_uri}")
        seen.add(item.obs_id)
        if item.obs_id in existing:
            if not skip_existing:
                raise RadiObjectError(f"obs_id {item.obs_id!r} already exists in {collection_uri}")
            report.results.append(ItemResult(item.obs_id, item.obs_subject_id, "present", source=item.source))
        else:
            todo.append(item)
    futures = [submit(write_volume, collection_uri, it, backend, storage, options) for it in todo]
    position = {f: i for i, f in enumerate(futures)}
    finished: dict[int, dict[str, Any] | None] = {}
    pending: list[dict[str, Any]] = []
    next_pos = 0
    first_error: str | None = None
    desc = progress if isinstance(progress, str) else collection_uri.rsplit("/", 1)[-1]
    bar = tqdm(total=len(todo), desc=desc, unit="vol", disable=not progress)
    for fut in as_completed(futures):
        pos = position[fut]
        item = todo[pos]
        try:
            res: VolumeWritten = fut.result()
        except Exception as exc:  # noqa: BLE001 - a worker died or could not run the task
            res = VolumeWritten(item.obs_id, None, 0.0, 0, f"{type(exc).__name__}: {exc}")
        bar.update(1)
        finished[pos] = res.row
        if res.row is None:
            report.results.append(ItemResult(item.obs_id, item.obs_subject_id, "failed", res.seconds,
                                             error=res.error, source=item.source))
            first_error = first_error or f"{item.obs_id}: {res.error}"
        else:
            report.results.append(ItemResult(item.obs_id, item.obs_subject_id, "written", res.seconds,
                                             res.nbytes, source=item.source))
        while next_pos in finished:
            row = finished.pop(next_pos)
            next_pos += 1
            if row is not None:
                pending.append(row)
                if len(pending) >= options.commit_every:
                    table.append(pd.DataFrame(pending))
                    pending.clear()
        if first_error is not None and on_error == "raise":
            for f in futures:
                f.cancel()
            break
    if pending:
        table.append(pd.DataFrame(pending))
    bar.close()
    if first_error is not None and on_error == "raise":
        raise RadiObjectError(f"ingest stopped at the first failure: {first_error}")
    return report


def executor_submit(executor: Executor) -> tuple[Submit, AsCompleted]:
    """``submit`` / ``as_completed`` for a ``concurrent.futures`` executor."""
    from concurrent.futures import as_completed

    return executor.submit, as_completed
