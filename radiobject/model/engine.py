"""The file-ingest engine, as the model sees it.

The model's file constructors (``RadiObject.from_files`` / ``from_niftis`` / ``from_dicoms``,
``VolumeCollection.from_files`` / ``from_niftis`` / ``from_dicoms`` / ``from_tiffs``) are thin
calls into the one ingest engine, which lives a layer above (``radiobject.ingest.entry_points``:
planning, validation, fingerprints, the crash-safe bulk write, the report). So that imports still
flow one way (ingest -> model), the engine registers its two functions here when it is imported,
and the root package imports it: any ``import radiobject...`` has registered it before a
constructor can run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from radiobject.errors import RadiObjectError

if TYPE_CHECKING:
    from radiobject.model.collection import VolumeCollection
    from radiobject.model.file_ingest import FileIngest, StoreIngest
    from radiobject.model.paths import CollectionSpec, PathSpec
    from radiobject.model.radi_object import RadiObject


_ENGINE: dict[str, Any] = {}


def register_file_engine(
    *, collection_from_files: Callable[..., VolumeCollection], store_from_files: Callable[..., RadiObject]
) -> None:
    """Called once by ``radiobject.ingest.entry_points`` at import."""
    _ENGINE["collection"] = collection_from_files
    _ENGINE["store"] = store_from_files


def collection_from_files(
    uri: str, spec: PathSpec | Mapping[str, str], ingest: FileIngest, *, name: str | None = None
) -> VolumeCollection:
    """A new collection from files, through the registered ingest engine."""
    return _engine("collection")(uri, spec, ingest, name=name)


def store_from_files(uri: str, images: Mapping[str, CollectionSpec], ingest: StoreIngest) -> RadiObject:
    """A new store from files per collection, through the registered ingest engine."""
    return _engine("store")(uri, images, ingest)


def _engine(kind: str) -> Any:
    try:
        return _ENGINE[kind]
    except KeyError:
        raise RadiObjectError(
            "the ingest engine is not loaded (import radiobject, not only radiobject.model)"
        ) from None
