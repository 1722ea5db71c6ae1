"""A store or collection a constructor is still building, recorded in the store's ``radiobject.json``
(a standalone collection's: its ``collection.json``).

Constructors (``RadiObject.from_*``, ``VolumeCollection.from_*``, ``store_from_files``) and derived
collections (``RadiObject.creating_collection``: ``resample``, see
``radiobject.model.building_collection``) are all or nothing: a failure or Ctrl-C removes what they
created. A process killed outright (``SIGKILL``, the out-of-memory killer, a preempted job) cannot
clean up, and its leftover holds part of the data while looking like a store. So the builder
records itself first (``"building"`` for a store or standalone collection,
``"building_collections"`` for a collection of a store: its process identity, host and start, see
``radiobject._os.owners``) and drops the record as its last step:

* another process opening what is being built gets :class:`~radiobject.errors.IncompleteStoreError`
  naming the builder and whether it still runs (the builder itself opens it freely);
* the same constructor run again removes a leftover whose builder is certainly gone and starts
  afresh; one whose builder runs (or cannot be checked: another host) is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from radiobject._os import owners
from radiobject.errors import IncompleteStoreError, StoreExistsError
from radiobject.storage import files
from radiobject.storage.locks import write_lock
from radiobject.storage.options import StorageOptions

__all__ = [
    "COLLECTIONS_KEY",
    "MARKER",
    "STORE_KEY",
    "abandoned",
    "check",
    "clear_abandoned_store",
    "entry_of",
    "mine",
    "record",
    "refusal",
    "set_building",
    "update_marker",
]

#: The store's marker file (format, backend, recorded collections, what is being built).
MARKER = "radiobject.json"
#: Keys of ``radiobject.json``: the store's builder, and ``{collection: builder}``.
STORE_KEY, COLLECTIONS_KEY = "building", "building_collections"


def record() -> dict[str, Any]:
    """This process as a builder: identity, host and since when (UTC)."""
    return {
        "owner": owners.this_process(),
        "host": owners.this_host(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def mine(entry: dict[str, Any]) -> bool:
    """Whether a builder record names this process."""
    return entry.get("owner") == owners.this_process() and entry.get("host") == owners.this_host()


def abandoned(entry: Any) -> bool:
    """Whether a builder record names a process that has certainly ended."""
    if not isinstance(entry, dict):
        return False
    return owners.owner_state(str(entry.get("owner", "")), entry.get("host")) == owners.GONE


def refusal(uri: str, entry: dict[str, Any], what: str) -> IncompleteStoreError:
    """The error for opening ``what`` (e.g. ``"this store"``) while ``entry`` builds it."""
    parts = str(entry.get("owner", "")).split()
    pid = parts[2] if len(parts) == 4 else entry.get("owner")
    who = f"process {pid} on {entry.get('host')} since {entry.get('since')}"
    state = owners.owner_state(str(entry.get("owner", "")), entry.get("host"))
    if state == owners.ALIVE:
        reason = f"{what} is being built by {who}; open it when that has finished"
    elif state == owners.GONE:
        reason = (
            f"{what} was being built by {who}, which ended before it finished (killed?): it holds only part "
            "of its data; run the call that made it again (it removes this leftover first) or delete it"
        )
    else:
        reason = (
            f"{what} is being built by {who}, or that process ended before it finished (it cannot be "
            "checked from this machine); wait for it, or delete the leftover"
        )
    return IncompleteStoreError(uri, reason)


def entry_of(meta: Any, collection: str | None = None) -> dict[str, Any] | None:
    """The builder record of the store (or ``collection``) in ``meta`` (a ``radiobject.json``), if any."""
    if not isinstance(meta, dict):
        return None
    if collection is None:
        entry = meta.get(STORE_KEY)
    else:
        building = meta.get(COLLECTIONS_KEY)
        entry = building.get(collection) if isinstance(building, dict) else None
    return entry if isinstance(entry, dict) else None


def check(uri: str, meta: Any, collection: str | None = None) -> None:
    """Raises :func:`refusal` when ``meta`` (a ``radiobject.json``) shows the store (or ``collection``)
    being built by another process."""
    entry = entry_of(meta, collection)
    if entry is not None and not mine(entry):
        raise refusal(uri, entry, "this store" if collection is None else f"collection {collection!r}")


def update_marker(
    store_uri: str, storage: StorageOptions, change: Callable[[dict[str, Any]], bool], marker_name: str = MARKER
) -> dict[str, Any]:
    """Reads the marker (``radiobject.json``; a standalone collection's ``collection.json``) under
    the write lock of ``store_uri``, lets ``change`` edit it, and writes it (atomically) when
    ``change`` returns ``True``; returns the record as it now is."""
    marker = files.join(store_uri, marker_name)
    with write_lock(store_uri, storage):
        meta = files.read_json(marker, storage)
        if change(meta):
            files.write_json_atomic(marker, meta, storage)
    return dict(meta)


def set_building(
    store_uri: str, storage: StorageOptions, collection: str | None, on: bool, marker_name: str = MARKER
) -> None:
    """Records this process as the builder of the store (``collection=None``; a standalone
    collection: ``marker_name="collection.json"``) or of ``collection`` in the store (``on=True``),
    or drops that record (``on=False``, the builder's last step)."""

    def change(meta: dict[str, Any]) -> bool:
        if collection is None:
            if on:
                meta[STORE_KEY] = record()
            else:
                meta.pop(STORE_KEY, None)
            return True
        building = meta.get(COLLECTIONS_KEY)
        building = dict(building) if isinstance(building, dict) else {}
        if on:
            building[collection] = record()
        else:
            building.pop(collection, None)
        if building:
            meta[COLLECTIONS_KEY] = building
        else:
            meta.pop(COLLECTIONS_KEY, None)
        return True

    update_marker(store_uri, storage, change, marker_name)


def clear_abandoned_store(uri: str, storage: StorageOptions, marker_name: str = MARKER) -> None:
    """Before a constructor creates a store (or, with ``marker_name="collection.json"``, a
    standalone collection) at ``uri``: removes a leftover whose builder has certainly ended;
    ``StoreExistsError`` naming the builder when one is building it now."""
    marker = files.join(uri, marker_name)
    try:
        meta = files.read_json(marker, storage)
    except (OSError, ValueError):
        return  # nothing there, or not a store: the constructor's own checks decide
    entry = meta.get(STORE_KEY) if isinstance(meta, dict) else None
    if not isinstance(entry, dict):
        return
    if not abandoned(entry):
        raise StoreExistsError(uri, refusal(uri, entry, "a store" if marker_name == MARKER else "a collection").reason)
    files.remove(uri, storage)
