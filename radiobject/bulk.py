"""Writing many volumes into one collection: parallel, committed in fragments, resumable.

A volume becomes visible only when the ``obs`` fragment holding its row is committed, which
happens after its array is complete. A crash therefore leaves at most unreferenced arrays, which
the next run overwrites; ``skip_existing`` makes a re-run finish only what is missing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Container, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radiobject.errors import RadiObjectError
from radiobject.formats.image import ImageData
from radiobject.ids import validate_id
from radiobject.options import WriteOptions
from radiobject.storage.base import Backend
from radiobject.storage.files import join
from radiobject.storage.tables import FragmentTable
from radiobject.volume_info import CATALOG_COLUMNS, VolumeInfo
from radiobject.writer import write_image

Loader = Callable[[], ImageData]


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

    def extend(self, other: "IngestReport") -> None:
        self.results.extend(other.results)


def obs_row(info: VolumeInfo, item: IngestItem) -> dict[str, Any]:
    """The ``obs`` row of a written volume: catalog facts then the user's columns."""
    row = info.to_row()
    row["obs_subject_id"] = item.obs_subject_id
    for k, v in item.columns.items():
        if k in CATALOG_COLUMNS:
            raise RadiObjectError(f"obs column {k!r} of {item.obs_id!r} is reserved")
        row[k] = v
    return row


def write_items(
    collection_uri: str,
    items: Iterable[IngestItem],
    backend: Backend,
    options: WriteOptions,
    *,
    existing: Container[str] = frozenset(),
    skip_existing: bool = False,
    on_error: str = "raise",
    progress: bool | str = False,
    on_commit: Callable[[list[dict[str, Any]]], None] | None = None,
) -> IngestReport:
    """Writes ``items`` as volumes of the collection at ``collection_uri``.

    ``existing``: obs IDs already committed; they are skipped with ``skip_existing`` and are an
    error otherwise. ``on_error="collect"`` records failures and goes on; ``"raise"`` re-raises the
    first one after committing what was complete. ``on_commit`` sees each committed batch of rows.
    """
    table = FragmentTable(join(collection_uri, "obs"), "obs_id", backend.storage)
    items = list(items)
    report = IngestReport()
    seen: set[str] = set()
    todo: list[IngestItem] = []
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

    pending_rows: list[dict[str, Any]] = []
    finished: dict[int, dict[str, Any] | None] = {}  # input position -> row (None: failed)
    next_pos = 0
    first_error: BaseException | None = None

    def commit() -> None:
        if pending_rows:
            table.append(pd.DataFrame(pending_rows))
            if on_commit is not None:
                on_commit(list(pending_rows))
            pending_rows.clear()

    def settle() -> None:
        """Moves finished rows to the commit buffer in input order (deterministic obs order)."""
        nonlocal next_pos
        while next_pos in finished:
            row = finished.pop(next_pos)
            next_pos += 1
            if row is not None:
                pending_rows.append(row)
                if len(pending_rows) >= options.commit_every:
                    commit()

    def run(item: IngestItem) -> tuple[VolumeInfo, float]:
        t0 = time.perf_counter()
        info = write_image(join(collection_uri, "volumes", item.obs_id), item.image(), backend, options, item.obs_id)
        return info, time.perf_counter() - t0

    desc = progress if isinstance(progress, str) else collection_uri.rsplit("/", 1)[-1]
    bar = tqdm(total=len(todo), desc=desc, unit="vol", disable=not progress)
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        queue = iter(enumerate(todo))
        running: dict[Future[tuple[VolumeInfo, float]], tuple[int, IngestItem]] = {}

        def refill() -> None:
            while len(running) < options.workers * 2 and first_error is None:
                nxt = next(queue, None)
                if nxt is None:
                    return
                running[pool.submit(run, nxt[1])] = nxt

        refill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                pos, item = running.pop(fut)
                bar.update(1)
                try:
                    info, secs = fut.result()
                except Exception as exc:  # noqa: BLE001 - reported per item
                    finished[pos] = None
                    report.results.append(
                        ItemResult(item.obs_id, item.obs_subject_id, "failed", error=str(exc), source=item.source)
                    )
                    if on_error == "raise" and first_error is None:
                        first_error = exc
                    continue
                finished[pos] = obs_row(info, item)
                nbytes = math.prod(info.shape) * np.dtype(info.dtype).itemsize
                report.results.append(
                    ItemResult(item.obs_id, item.obs_subject_id, "written", secs, nbytes, source=item.source)
                )
            settle()
            refill()
    commit()
    bar.close()
    if first_error is not None:
        raise first_error
    return report
