"""How ``VolumeReader`` opens a volume in a worker: the version it was built on, on the grid it was built for.

A reader records each volume's version, shape and affine when it is built (in the training
process, from the catalog). A process that opens the volume later may find the catalog moved on
(``VolumeCollection.replace``): it then reads the recorded version, whole, as a reader that opened
the catalog earlier does (``docs/integrity.md``, *Versions*), so a subject's image and label stay
on the grid the sampler draws patches for. A recorded version removed since (garbage collection)
is a ``CorruptDataError``; a volume changed in place (a store without versioned paths) to another
grid is an ``AlignmentError``; never a read on the wrong grid.

Bounded per process, whatever the cohort:

* a recorded version of a store with versioned paths is opened straight from its path (its
  stored attributes give its metadata): a worker does not load the collections' catalogs (at
  50,000 subjects and two collections that cost each worker process 190 MB and 1.2 s). Anything
  unexpected there (the path gone, another version found) takes the catalog path, which raises
  what it always raised;
* a reader keeps at most :data:`MAX_OPEN_VOLUMES` volumes open per process (:class:`OpenVolumes`,
  least recently used closed first): each holds a backend handle (measured ~25 KB for Zarr,
  ~110 KB for TileDB), so 20,000 volumes held open would cost a worker 0.5-2 GB.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from radiobject._os.forks import ForkSafeLock
from radiobject.errors import AlignmentError, CorruptDataError, NotFoundError, StoreNotFoundError, VersionMismatchError
from radiobject.model.volume import Volume

__all__ = ["MAX_OPEN_VOLUMES", "OpenVolumes", "catalog_rows", "check_geometry", "open_volume", "pinned_volume"]

#: Volumes one reader keeps open in one process (the least recently used beyond are closed and
#: reopened when read again: an open reads the volume's metadata, ~1-3 ms on a local disk).
MAX_OPEN_VOLUMES = 1024


class OpenVolumes:
    """This process's open volumes of one reader, keyed by ``(subject index, collection)``: an LRU
    of at most :data:`MAX_OPEN_VOLUMES` (read at each insert); thread-safe."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[int, str], Volume] = OrderedDict()
        self._lock = ForkSafeLock()

    def get(self, key: tuple[int, str]) -> Volume | None:
        """The open volume (now the most recently used), or ``None``."""
        with self._lock:
            vol = self._items.get(key)
            if vol is not None:
                self._items.move_to_end(key)
            return vol

    def put(self, key: tuple[int, str], vol: Volume) -> Volume:
        """Keeps ``vol`` open (closing the least recently used beyond the bound); returns the volume
        now kept for ``key`` (another thread's, if it opened the same one first)."""
        with self._lock:
            held = self._items.get(key)
            if held is not None:
                return held
            self._items[key] = vol
            while len(self._items) > max(1, MAX_OPEN_VOLUMES):
                self._items.popitem(last=False)
            return vol

    def clear(self) -> None:
        """Closes every volume (they are reopened on their next read)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def catalog_rows(obs: Any, name: str, is_label: bool) -> dict[str, tuple[str, tuple[int, ...], tuple[float, ...], str]]:
    """Per subject of one collection's ``obs`` frame: ``(obs ID, shape, affine (16 floats), version)``.

    Read column by column (not one dict per row: 8.6 s -> ~2 s for 50,000 subjects in two
    collections). ``AlignmentError`` for a subject with several volumes, a volume that is not 3D
    / 4D, or a label that is not one 3D map.
    """
    n = len(obs)
    versions = obs["version"].tolist() if "version" in obs.columns else [None] * n
    per: dict[str, tuple[str, tuple[int, ...], tuple[float, ...], str]] = {}
    for oid, sid, raw_shape, affine, version in zip(
        obs["obs_id"].tolist(),
        obs["obs_subject_id"].tolist(),
        obs["shape"].tolist(),
        obs["affine"].tolist(),
        versions,
        strict=True,
    ):
        sid = str(sid)
        if sid in per:
            raise AlignmentError(sid, f"has several volumes in collection {name!r}; select one per subject")
        shape = tuple(int(s) for s in raw_shape)
        if len(shape) < 3 or min(shape) < 1:
            raise AlignmentError(
                sid,
                f"volume {oid!r} of collection {name!r} has shape {shape}: the loaders need 3D "
                "(x, y, z) or 4D (x, y, z, t) volumes",
            )
        if is_label and len(shape) > 3 and int(np.prod(shape[3:])) != 1:
            raise AlignmentError(
                sid,
                f"label volume {oid!r} of collection {name!r} has shape {shape}: a label must be one 3D map (x, y, z)",
            )
        flat = tuple(np.asarray(affine, dtype=np.float64).ravel().tolist())
        per[sid] = (str(oid), shape, flat, "" if version is None else str(version))
    return per


def open_volume(reader: Any, index: int, collection: str) -> Volume:
    """Subject ``index``'s volume of ``collection`` in the version the reader was built on, checked
    to lie on the reader's grid."""
    names = [*reader.modalities, reader.label] if reader.label else list(reader.modalities)
    try:
        col = names.index(collection)
    except ValueError:
        raise NotFoundError("collection", collection, "this reader") from None
    oid = reader.obs_ids[index][col]
    pinned = reader.versions[index][col] if reader.versions else ""
    vol = _by_path(reader, collection, oid, pinned) if pinned else None
    if vol is None:  # through the catalog (loaded once per process)
        vol = reader.radi[collection].volume(oid)
        if pinned and vol.info.version and vol.info.version != pinned:
            vol = pinned_volume(reader, index, collection, vol, pinned)
    check_geometry(reader, index, collection, vol)
    return vol


def _by_path(reader: Any, collection: str, obs_id: str, version: str) -> Volume | None:
    """Version ``version`` of ``obs_id`` opened from its path, without the catalog; ``None`` when the
    store has no versioned paths, or that version is not found whole there (the catalog path decides)."""
    state = reader.radi[collection]._state  # the collection's marker only: no catalog read
    if state.layout < 2:
        return None  # one path per obs ID: its version is only known from the catalog
    try:
        vol = Volume(state.volume_uri(obs_id, version), storage=reader.location.storage)
    except (StoreNotFoundError, CorruptDataError):
        return None
    return vol if vol.info.version == version else None


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
