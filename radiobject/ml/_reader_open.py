"""How ``VolumeReader`` opens a volume in a worker: the version it was built on, on the grid it was built for.

A reader records each volume's version, shape and affine when it is built (in the training
process, from the catalog). A process that opens the volume later may find the catalog moved on
(``VolumeCollection.replace``): it then reads the recorded version, whole, as a reader that opened
the catalog earlier does (``docs/integrity.md``, *Versions*), so a subject's image and label stay
on the grid the sampler draws patches for. A recorded version removed since (garbage collection)
is a ``CorruptDataError``; a volume changed in place (a store without versioned paths) to another
grid is an ``AlignmentError``; never a read on the wrong grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from radiobject.errors import AlignmentError, CorruptDataError, StoreNotFoundError, VersionMismatchError
from radiobject.model.volume import Volume

__all__ = ["check_geometry", "pinned_volume"]


def pinned_volume(reader: Any, index: int, collection: str, current: Volume, version: str) -> Volume:
    """Version ``version`` of a volume replaced since this reader was built (read whole, as it was)."""
    sid = reader.subject_ids[index]
    where = {"store": reader.location.uri, "collection": collection, "subject": sid}
    if not current.uri.rstrip("/").endswith("/" + current.info.version):
        raise VersionMismatchError(
            current.uri,
            f"volume of subject {sid!r} in collection {collection!r} was replaced since this loader was built "
            f"(version {current.info.version}, the loader read {version}); rebuild the loader",
        )
    uri = current.uri.rstrip("/")[: -len(current.info.version)] + version
    try:
        return Volume(uri, storage=reader.location.storage)
    except (StoreNotFoundError, CorruptDataError) as exc:
        raise CorruptDataError(
            uri,
            f"version {version}, which this loader was built on, was replaced and removed since "
            f"({type(exc).__name__}); rebuild the loader to read the current version",
            **where,
        ) from exc


def check_geometry(reader: Any, index: int, collection: str, vol: Volume) -> None:
    """A volume whose grid is not the one this reader was built with is an error, never a misaligned read."""
    shape = tuple(int(s) for s in vol.shape[:3])
    if shape != tuple(reader.shapes[index]) or not np.allclose(vol.affine, reader.affine(index), atol=1e-4):
        raise AlignmentError(
            reader.subject_ids[index],
            f"volume in collection {collection!r} of {reader.location.uri} now has shape {shape} / another affine; "
            f"the loader was built for {tuple(reader.shapes[index])} (it changed in place); rebuild the loader",
        )
