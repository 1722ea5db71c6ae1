"""The store an ingest writes into: refused when it is someone else's folder, marked while running.

``ingest.json`` at the store root says whether the last run completed: it is written with
``"complete": false`` (``"running": true``) before the first volume and rewritten at the end, so a
kill at any moment leaves a store whose marker does not claim completeness.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from radiobject.errors import StoreExistsError, UnsafePathError
from radiobject.model.checks import INGEST_MARKER
from radiobject.storage import files
from radiobject.storage.options import StorageOptions, is_remote, strip_file_scheme

__all__ = [
    "COLLECTION_NAMES",
    "MARKER",
    "STORE_NAMES",
    "check_target",
    "enclosing_store",
    "refuse_inside_store",
    "write_marker",
]

#: Written by every run: ``{"complete": bool, "counts": {...}, "finished": ISO time}``.
MARKER = INGEST_MARKER
#: Entries an (unfinished) store's root may hold: a crash during creation leaves some of them.
#: Names starting with ``radiobject``, ``__`` (TileDB) or ``.`` (locks, temporary files) count too.
STORE_NAMES: frozenset[str] = frozenset({"zarr.json", "collections", "obs_meta", MARKER})
#: The same for a collection's folder (``VolumeCollection.from_*``).
COLLECTION_NAMES: frozenset[str] = frozenset({"collection.json", "zarr.json", "volumes", "obs", "superseded"})


def _ours(name: str, allowed: frozenset[str]) -> bool:
    return name in allowed or name.startswith(("radiobject", "__", "."))


def enclosing_store(path: str, *, strict: bool = False) -> str | None:
    """The local radiobject store folder (one holding ``radiobject.json``) that ``path`` is or
    lies inside (``strict``: only a folder above ``path``), else None. Links are resolved, so a
    link into a store counts as inside it. Remote URIs give None."""
    if is_remote(path):
        return None
    here = os.path.realpath(os.path.abspath(strip_file_scheme(path) or "."))
    first = True
    while True:
        if not (strict and first) and os.path.isfile(os.path.join(here, "radiobject.json")):
            return here
        first = False
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def refuse_inside_store(path: str, what: str, *, allow: str | None = None) -> None:
    """``UnsafePathError`` when ``path`` (an output file or folder: a PNG, an export folder, a
    report) is or lies inside a local radiobject store, other than the store ``allow``: writing
    there would overwrite or clutter the store's own files (``radiobject.json`` ...)."""
    store = enclosing_store(path)
    if store is None:
        return
    if allow is not None and not is_remote(allow):
        if os.path.realpath(os.path.abspath(strip_file_scheme(allow))) == store:
            return
    raise UnsafePathError(path, f"{what} lies inside the radiobject store {store}; write it outside the store")


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
    outer = enclosing_store(path, strict=True) if marker == "radiobject.json" else None
    if outer is not None:  # a store inside another store's folders would be taken for its parts
        raise StoreExistsError(uri, f"lies inside the radiobject store {outer}; create the store outside it")
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
