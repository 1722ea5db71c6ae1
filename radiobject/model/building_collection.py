"""``RadiObject.creating_collection``: a derived collection recorded as being built while it is
written (the record itself: ``radiobject.model.building``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from radiobject.model.building import MARKER, abandoned, entry_of, mine, refusal, set_building
from radiobject.model.collection import VolumeCollection
from radiobject.model.collection_writes import NewTarget
from radiobject.model.options import WriteOptions
from radiobject.storage import files

__all__ = ["creating_collection"]


@contextmanager
def creating_collection(radi: Any, name: str, options: WriteOptions | None) -> Iterator[bool]:
    """``RadiObject.creating_collection``: the collection is recorded as being built for the block."""
    name, opts = radi._checked_collection(name, options)
    radi._names = None  # fresh: another process may have created it
    uri, storage = radi._coll_uri(name), radi.location.storage
    if name in radi._all_collection_names():
        entry = entry_of(files.read_json(files.join(radi.uri, MARKER), storage), name)
        if entry is None or not abandoned(entry):  # complete (resumed), or being built now (refused)
            if entry is not None and not mine(entry):
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
