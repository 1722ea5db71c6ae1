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
from radiobject.storage import files
from radiobject.storage.options import StorageOptions, is_remote, strip_file_scheme

__all__ = ["MARKER", "STORE_NAMES", "check_target", "write_marker"]

#: Written by every run: ``{"complete": bool, "counts": {...}, "finished": ISO time}``.
MARKER = "ingest.json"
#: Entries an (unfinished) store's root may hold: a crash during creation leaves some of them.
STORE_NAMES: frozenset[str] = frozenset({
    "radiobject.json", "zarr.json", "__tiledb_group.tdb", "__group", "__meta", "collections", "obs_meta",
    MARKER, ".radiobject.lock",
})


def check_target(uri: str, storage: StorageOptions) -> bool:
    """True when a store exists at ``uri``. A local folder that exists, is not a store and holds
    anything a store would not (``STORE_NAMES``; temporary ``.tmp`` files aside) raises
    ``StoreExistsError``: an ingest never writes into, and later cleans up, a user's folder."""
    if files.exists(files.join(uri, "radiobject.json"), storage):
        return True
    if is_remote(uri):
        return False
    path = strip_file_scheme(uri)
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreExistsError(uri, "exists and is a file, not a store folder")
    if not os.path.isdir(path):
        return False
    foreign = sorted(n for n in os.listdir(path) if n not in STORE_NAMES and ".tmp" not in n)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise StoreExistsError(uri, f"folder exists, is not a radiobject store and holds files ({shown}); "
                                    f"ingest into a new or empty folder")
    return False


def write_marker(uri: str, storage: StorageOptions, *, complete: bool, running: bool = False, aborted: str = "",
                 counts: dict[str, int] | None = None) -> None:
    """Writes ``ingest.json`` atomically: ``complete``, ``running``, ``aborted``, ``counts`` and the time."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc: dict[str, Any] = {"format": "radiobject-ingest", "complete": complete, "running": running,
                           "aborted": aborted, "counts": dict(counts or {}), "started" if running else "finished": now}
    files.write_json_atomic(files.join(uri, MARKER), doc, storage)
