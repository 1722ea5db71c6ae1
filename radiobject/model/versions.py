"""Volume versions: every write is a new array path, published by one catalog commit.

A collection (layout 2) stores volume ``obs_id`` as ``volumes/<obs_id>/<version>``, where
``version`` is a fresh random 32-hex token per write, recorded both in the array's attributes and
in the volume's ``obs`` row. A writer fills the new path completely, then commits the row (one
atomic fragment): readers see the whole old or the whole new volume, never a mix. A replaced or
deleted version is recorded in the ``superseded`` table and removed by :func:`collect_garbage`
only after a grace period, so a reader that opened the catalog before the change can finish.
Layout 1 collections (radiobject before versions) keep ``volumes/<obs_id>`` and are read as is.
"""

from __future__ import annotations

import re
import time
import uuid

import pandas as pd

from radiobject.errors import InvalidIdError
from radiobject.model.ids import validate_id
from radiobject.storage import files
from radiobject.storage.options import StorageOptions
from radiobject.storage.tables import FragmentTable

#: The collection layout written now (``collection.json`` ``version``).
LAYOUT = 2
#: Seconds a superseded version stays readable before ``collect_garbage`` may remove it.
DEFAULT_GRACE_SECONDS = 3600.0
_VERSION = re.compile(r"^[0-9a-f]{32}$")


def new_version() -> str:
    """A fresh version token (32 lowercase hex digits)."""
    return uuid.uuid4().hex


def validate_version(value: object, where: str) -> str:
    """``value`` when it is a version token, else ``InvalidIdError`` naming ``where``."""
    if not isinstance(value, str) or not _VERSION.match(value):
        raise InvalidIdError(f"volume version in {where}", value, "is not a 32-digit hex version token")
    return value


def volume_uri(collection_uri: str, obs_id: str, version: str, layout: int = LAYOUT) -> str:
    """Where version ``version`` of volume ``obs_id`` lives (layout 1: one path per obs ID)."""
    if layout < 2:
        return files.join(collection_uri, "volumes", obs_id)
    return files.join(collection_uri, "volumes", obs_id, version)


def validate_rows(df: pd.DataFrame, table_uri: str, layout: int = LAYOUT) -> None:
    """Checks every ID read back from a catalog (a tampered table must not steer a path)."""
    where = f"table {table_uri}"
    for oid in df["obs_id"].tolist() if "obs_id" in df.columns else ():
        validate_id(oid, f"obs_id in {where}")
    for sid in df["obs_subject_id"].dropna().tolist() if "obs_subject_id" in df.columns else ():
        validate_id(sid, f"subject id in {where}")
    if layout >= 2 and "version" in df.columns:
        for v in df["version"].tolist():
            validate_version(v, where)


def superseded_table(collection_uri: str, storage: StorageOptions) -> FragmentTable:
    """Versions that no row references any more, with the time they were superseded."""
    return FragmentTable(files.join(collection_uri, "superseded"), "path", storage)


def record_superseded(collection_uri: str, storage: StorageOptions, rel_paths: list[str]) -> None:
    """Records array paths (relative to the collection) replaced or deleted now."""
    if rel_paths:
        now = time.time()
        superseded_table(collection_uri, storage).append(
            pd.DataFrame({"path": rel_paths, "superseded_at": [now] * len(rel_paths)})
        )


def relative(collection_uri: str, uri: str) -> str:
    """``uri`` relative to the collection (the form ``superseded`` stores)."""
    return uri[len(collection_uri.rstrip("/")) + 1 :]


def collect_garbage(
    collection_uri: str, storage: StorageOptions, referenced: set[str], grace_seconds: float = DEFAULT_GRACE_SECONDS
) -> list[str]:
    """Removes superseded versions older than ``grace_seconds``; returns their relative paths.

    Call under the collection's write lock. ``referenced``: relative paths the catalog uses now
    (never removed, whatever ``superseded`` says). Local stores also lose unreferenced version
    folders (left by a crashed writer) older than the grace period; a writer in progress is
    younger than that. Every removal refuses symbolic links (``UnsafePathError``).
    """
    table = superseded_table(collection_uri, storage)
    df = table.read()
    now, removed = time.time(), []
    for path, at in zip(
        df["path"].tolist(), df.get("superseded_at", pd.Series([], dtype=float)).tolist(), strict=False
    ):
        if path in referenced or now - float(at) < grace_seconds:
            continue
        _remove_version(collection_uri, storage, path)
        removed.append(path)
    if removed:
        table.delete(removed)
        table.compact()
    known = set(df["path"].tolist())
    root = files.join(collection_uri, "volumes")
    in_use = {r.split("/")[1] for r in referenced if r.count("/") == 2}
    for oid in files.listdir(root, storage):
        if oid.startswith((".", "__")) or oid.endswith(".json"):
            continue
        left = 0
        for ver in files.listdir(files.join(root, oid), storage):
            rel = f"volumes/{oid}/{ver}"
            if not _VERSION.match(ver):
                continue
            left += 1
            if rel in referenced or rel in known:
                continue
            age = files.mtime(files.join(root, oid, ver), storage)
            if age is not None and now - age >= grace_seconds:
                _remove_version(collection_uri, storage, rel)
                removed.append(rel)
                left -= 1
        if not left and oid not in in_use:
            _remove_empty_volume_folder(collection_uri, storage, oid, grace_seconds)
    return removed


def _remove_empty_volume_folder(collection_uri: str, storage: StorageOptions, oid: str, grace_seconds: float) -> None:
    """Removes ``volumes/<oid>`` (its group metadata only: no version left, no catalog row) when it was
    last changed ``grace_seconds`` ago or longer; a writer that just created it for a new volume is
    younger. Object stores have no folder times: there only with ``grace_seconds <= 0``."""
    validate_id(oid, f"obs_id folder in {collection_uri}/volumes")
    folder = files.join(collection_uri, "volumes", oid)
    changed = files.mtime(folder, storage)
    if (grace_seconds <= 0) if changed is None else (time.time() - changed >= grace_seconds):
        files.remove(folder, storage, root=collection_uri)


def _remove_version(collection_uri: str, storage: StorageOptions, rel: str) -> None:
    parts = rel.split("/")
    if len(parts) != 3 or parts[0] != "volumes":
        raise InvalidIdError(f"superseded path in {collection_uri}", rel, "is not volumes/<obs_id>/<version>")
    validate_id(parts[1], f"obs_id in {collection_uri}/superseded")
    validate_version(parts[2], f"{collection_uri}/superseded")
    files.remove(files.join(collection_uri, rel), storage, root=collection_uri)
