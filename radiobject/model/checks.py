"""The light checks every open runs, and the naming of damaged data: marker format versions,
known backends, and :func:`located` (a ``CorruptDataError`` with its store, collection and
subject filled in). Whole-store verification is :mod:`radiobject.model.integrity`."""

from __future__ import annotations

from typing import Any

from radiobject.errors import CorruptDataError, FormatVersionError
from radiobject.model.versions import LAYOUT
from radiobject.storage import files
from radiobject.storage.options import StorageOptions
from radiobject.storage.registry import BACKEND_NAMES
from radiobject.storage.tables import FragmentTable

#: Written at a store's root by every ingest (``radiobject.ingest.target``): ``complete`` is false
#: from the start of a run until it finished.
INGEST_MARKER = "ingest.json"
#: Store / collection marker format versions this code reads.
MARKER_VERSIONS = {"radiobject.json": 1, "collection.json": 1}


def _split(uri: str) -> tuple[str, str, str]:
    """``(store, collection, obs_id)`` of a volume URI ``<store>/collections/<c>/volumes/<id>[/<v>]``."""
    head, sep, rest = uri.rstrip("/").rpartition("/collections/")
    if not sep:
        return "", "", ""
    parts = rest.split("/")
    if len(parts) >= 3 and parts[1] == "volumes":
        return head, parts[0], parts[2]
    return head, parts[0], ""


def located(exc: CorruptDataError, uri: str, storage: StorageOptions | None = None) -> CorruptDataError:
    """``exc`` with the store, collection and subject of the volume at ``uri`` filled in."""
    if exc.store:
        return exc
    store, coll, obs_id = _split(uri)
    subject = ""
    if coll and obs_id:
        try:  # error path only: look the subject up in the collection's catalog
            table = FragmentTable(files.join(store, "collections", coll, "obs"), "obs_id", storage or StorageOptions())
            subject = str(table.live_values("obs_subject_id").get(obs_id) or "")
        except Exception:  # noqa: BLE001 - a damaged catalog must not hide the original error
            subject = ""
    where = f"volume {obs_id!r}: " if obs_id else ""
    return CorruptDataError(exc.uri, f"{where}{exc.reason}", exc.part, store, coll, subject or obs_id)


def check_marker(uri: str, meta: Any, name: str) -> None:
    """``FormatVersionError`` when a store / collection marker is newer than this code reads."""
    version = meta.get("version", 1) if isinstance(meta, dict) else 1
    supported = MARKER_VERSIONS.get(name, 1)
    if not isinstance(version, int) or version > supported:
        raise FormatVersionError(uri, f"{name} has format version {version!r}; this radiobject reads up to {supported}")
    if name == "collection.json" and isinstance(meta, dict):
        layout = meta.get("layout", 1)
        if not isinstance(layout, int) or layout > LAYOUT:
            raise FormatVersionError(uri, f"{name} has volume layout {layout!r}; this radiobject reads up to {LAYOUT}")


def check_backend_name(uri: str, backend: Any, name: str) -> None:
    """``CorruptDataError`` when a marker names no backend this radiobject knows."""
    if backend not in BACKEND_NAMES:
        raise CorruptDataError(
            uri, f"{name} names an unknown backend {backend!r} (known: {', '.join(BACKEND_NAMES)})", part=name
        )
