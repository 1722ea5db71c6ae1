"""The store an ingest writes into: refused when it is someone else's folder, marked while running.

``ingest.json`` at the store root says whether the last run completed: it is written with
``"complete": false`` (``"running": true``) before the first volume and rewritten at the end, so a
kill at any moment leaves a store whose marker does not claim completeness.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from radiobject.errors import StoreExistsError
from radiobject.model.checks import INGEST_MARKER
from radiobject.storage import files
from radiobject.storage.options import StorageOptions, is_remote, strip_file_scheme

__all__ = ["COLLECTION_NAMES", "MARKER", "STORE_NAMES", "check_target", "write_marker"]

#: Written by every run: ``{"complete": bool, "counts": {...}, "finished": ISO time}``.
MARKER = INGEST_MARKER
#: Entries an (unfinished) store's root may hold: a crash during creation leaves some of them.
#: Names starting with ``radiobject``, ``__`` (TileDB) or ``.`` (locks, temporary files) count too.
STORE_NAMES: frozenset[str] = frozenset({"zarr.json", "collections", "obs_meta", MARKER})
#: The same for a collection's folder (``VolumeCollection.from_*``).
COLLECTION_NAMES: frozenset[str] = frozenset({"collection.json", "zarr.json", "volumes", "obs", "superseded"})


def _ours(name: str, allowed: frozenset[str]) -> bool:
    return name in allowed or name.startswith(("radiobject", "__", "."))


def check_target(
    uri: str, storage: StorageOptions, *, marker: str = "radiobject.json", allowed: frozenset[str] = STORE_NAMES
) -> bool:
    """True when a store (``marker``) exists at ``uri``. A local folder that exists, is not one and
    holds anything a store would not (``allowed``, hidden files, ``radiobject*``, ``__*``) raises
    ``StoreExistsError``: an ingest never writes into a user's folder."""
    if files.exists(files.join(uri, marker), storage):
        return True
    if is_remote(uri):
        return False
    path = strip_file_scheme(uri)
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreExistsError(uri, "exists and is a file, not a store folder")
    if not os.path.isdir(path):
        return False
    foreign = sorted(n for n in os.listdir(path) if not _ours(n, allowed))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise StoreExistsError(
            uri,
            f"folder exists, is not a radiobject store and holds files ({shown}); ingest into a new or empty folder",
        )
    return False


def write_marker(
    uri: str,
    storage: StorageOptions,
    *,
    complete: bool,
    running: bool = False,
    aborted: str = "",
    counts: dict[str, int] | None = None,
) -> None:
    """Writes ``ingest.json`` atomically: ``complete``, ``running``, ``aborted``, ``counts`` and the time."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc: dict[str, Any] = {
        "format": "radiobject-ingest",
        "complete": complete,
        "running": running,
        "aborted": aborted,
        "counts": dict(counts or {}),
        "started" if running else "finished": now,
    }
    files.write_json_atomic(files.join(uri, MARKER), doc, storage)
