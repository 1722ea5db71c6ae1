"""A store or collection a constructor is still building, recorded in the store's ``radiobject.json``.

Constructors (``RadiObject.from_*``, ``store_from_files``) and derived collections
(``RadiObject.creating_collection``: ``resample``) are all or nothing: a failure or Ctrl-C removes
what they created. A process killed outright (``SIGKILL``, the out-of-memory killer, a preempted
job) cannot clean up, and its leftover holds part of the data while looking like a store. So the
builder records itself first (``"building"`` for the store, ``"building_collections"`` for a
collection: its process identity, host and start, see ``radiobject._os.owners``) and drops the
record as its last step:

* another process opening what is being built gets :class:`~radiobject.errors.IncompleteStoreError`
  naming the builder and whether it still runs (the builder itself opens it freely);
* the same constructor run again removes a leftover whose builder is certainly gone and starts
  afresh; one whose builder runs (or cannot be checked: another host) is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from radiobject._os import owners
from radiobject.errors import IncompleteStoreError, StoreExistsError
from radiobject.model.collection import VolumeCollection
from radiobject.model.collection_writes import NewTarget
from radiobject.model.options import WriteOptions
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
    "creating_collection",
    "entry_of",
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


def _mine(entry: dict[str, Any]) -> bool:
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
    if entry is not None and not _mine(entry):
        raise refusal(uri, entry, "this store" if collection is None else f"collection {collection!r}")


@contextmanager
def creating_collection(radi: Any, name: str, options: WriteOptions | None) -> Iterator[bool]:
    """``RadiObject.creating_collection``: the collection is recorded as being built for the block."""
    name, opts = radi._checked_collection(name, options)
    radi._names = None  # fresh: another process may have created it
    uri, storage = radi._coll_uri(name), radi.location.storage
    if name in radi._all_collection_names():
        entry = entry_of(files.read_json(files.join(radi.uri, MARKER), storage), name)
        if entry is None or not abandoned(entry):  # complete (resumed), or being built now (refused)
            if entry is not None and not _mine(entry):
                raise refusal(radi.uri, entry, f"collection {name!r}")
            yield False
            return
        radi._record_collection(name, recorded=False)  # a killed builder's leftover: made afresh
        files.remove(uri, storage, root=radi.uri)
    target = NewTarget.before(uri, storage)
    VolumeCollection.create(uri, name=name, options=opts, storage=storage)  # StoreExistsError: not ours
    with target.removed_on_failure(first=lambda: radi._record_collection(name, recorded=False)):
        radi._names = None
        set_building(radi.uri, storage, name, True)  # first: a kill right after leaves a marked leftover
        radi._record_collection(name)
        yield True
        set_building(radi.uri, storage, name, False)


def update_marker(store_uri: str, storage: StorageOptions, change: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Reads ``radiobject.json`` under the store's write lock, lets ``change`` edit it, and writes it
    (atomically) when ``change`` returns ``True``; returns the record as it now is."""
    marker = files.join(store_uri, MARKER)
    with write_lock(store_uri, storage):
        meta = files.read_json(marker, storage)
        if change(meta):
            files.write_json_atomic(marker, meta, storage)
    return dict(meta)


def set_building(store_uri: str, storage: StorageOptions, collection: str | None, on: bool) -> None:
    """Records this process as the builder of the store (``collection=None``) or of ``collection``
    (``on=True``), or drops that record (``on=False``, the builder's last step)."""

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

    update_marker(store_uri, storage, change)


def clear_abandoned_store(uri: str, storage: StorageOptions) -> None:
    """Before a constructor creates a store at ``uri``: removes a leftover store whose builder has
    certainly ended; ``StoreExistsError`` naming the builder when one is building it now."""
    marker = files.join(uri, MARKER)
    try:
        meta = files.read_json(marker, storage)
    except (OSError, ValueError):
        return  # nothing there, or not a store: the constructor's own checks decide
    entry = meta.get(STORE_KEY) if isinstance(meta, dict) else None
    if not isinstance(entry, dict):
        return
    if not abandoned(entry):
        raise StoreExistsError(uri, refusal(uri, entry, "a store").reason)
    files.remove(uri, storage)
