"""Open what lies at a location: a store, or a standalone collection (``radiobject info`` /
``verify`` take either)."""

from __future__ import annotations

from radiobject.model.building import MARKER as STORE_MARKER
from radiobject.model.catalog import MARKER as COLLECTION_MARKER
from radiobject.model.collection import VolumeCollection
from radiobject.model.radi_object import RadiObject
from radiobject.storage import files
from radiobject.storage.options import StorageOptions

__all__ = ["open_store_or_collection"]


def open_store_or_collection(uri: str, storage: StorageOptions | None = None) -> RadiObject | VolumeCollection:
    """The standalone collection at ``uri`` (a ``collection.json`` and no ``radiobject.json``),
    else the store there (``RadiObject``'s errors when there is none)."""
    storage = storage or StorageOptions()
    if not files.exists(files.join(uri, STORE_MARKER), storage) and files.exists(
        files.join(uri, COLLECTION_MARKER), storage
    ):
        return VolumeCollection(uri, storage=storage)
    return RadiObject(uri, storage=storage)
