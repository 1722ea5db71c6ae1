"""``VolumeCollection``: volumes of one kind plus their ``obs`` table; views are ID subsets."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from radiobject.errors import DuplicateIdError, NotFoundError, StoreExistsError
from radiobject.formats.image import ImageData
from radiobject.model import building
from radiobject.model.bulk import IngestItem, IngestReport, Submitter, write_items
from radiobject.model.catalog import FORMAT, MARKER, CatalogState
from radiobject.model.collection_files import FileConstructors
from radiobject.model.collection_writes import NewTarget, VersionedWrites
from radiobject.model.frames import CatalogFrame
from radiobject.model.ids import validate_collection_name, validate_id
from radiobject.model.indexing import Indexer, positions
from radiobject.model.options import WriteOptions
from radiobject.model.versions import LAYOUT
from radiobject.model.volume import Volume
from radiobject.model.volume_info import CATALOG_COLUMNS, VolumeInfo
from radiobject.storage import files
from radiobject.storage.location import StoreLocation
from radiobject.storage.locks import write_lock
from radiobject.storage.options import StorageOptions, as_location
from radiobject.storage.registry import get_backend
from radiobject.storage.tables import FragmentTable


class VolumeCollection(FileConstructors, VersionedWrites):
    """Volumes of one kind (e.g. all T1w) with one ``obs`` row per volume.

    ``VolumeCollection(uri)`` opens a stored collection. ``iloc[i]`` / ``loc["id"]`` give a
    ``Volume``; slices, lists and masks give a view (same API, fewer volumes). Volumes are
    addressed by ``obs_id``, never by position, so order changes and appends cannot mix them up.
    """

    def __init__(self, uri: str | os.PathLike[str], *, storage: StorageOptions | None = None) -> None:
        uri = as_location(uri)
        self._state = CatalogState(StoreLocation(uri, storage or StorageOptions()))
        self._ids: tuple[str, ...] | None = None

    @classmethod
    def _view(cls, state: CatalogState, ids: Sequence[str] | None) -> VolumeCollection:
        obj = cls.__new__(cls)
        obj._state, obj._ids = state, None if ids is None else tuple(ids)
        return obj

    @classmethod
    def open(cls, location: StoreLocation) -> VolumeCollection:
        """Opens from a picklable location."""
        return cls(location.uri, storage=location.storage)

    # ---------------------------------------------------------------- creating
    @classmethod
    def create(
        cls,
        uri: str | os.PathLike[str],
        *,
        name: str | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        exist_ok: bool = False,
        being_built: bool = False,
    ) -> VolumeCollection:
        """Creates an empty collection (its name defaults to the last path component).

        ``being_built``: recorded as built by this process until :meth:`from_items` finishes
        (``radiobject.model.building``): other processes are refused it meanwhile."""
        uri = as_location(uri)
        opts, storage = options or WriteOptions(), storage or StorageOptions()
        name = validate_collection_name(name or uri.rstrip("/").rsplit("/", 1)[-1])
        opts = opts.for_collection(name)  # lossy storage is refused for a label collection
        marker = files.join(uri, MARKER)
        if files.exists(marker, storage):
            if not exist_ok:
                raise StoreExistsError(uri, "a collection already exists here")
            return cls(uri, storage=storage)
        files.makedirs(uri, storage)
        with write_lock(uri, storage):  # N processes creating it at once: one creates, all open it
            if files.exists(marker, storage):
                if not exist_ok:
                    raise StoreExistsError(uri, "a collection already exists here")
                return cls(uri, storage=storage)
            backend = get_backend(opts.backend, storage)
            backend.create_group(uri, {"radiobject": {"kind": "collection", "name": name}})
            backend.create_group(files.join(uri, "volumes"), {"radiobject": {"kind": "volumes"}})
            # the catalog exists from the start (an empty base fragment and its head): a deleted
            # obs table is then an error, never an empty collection (``"catalog": 1``)
            empty = pd.DataFrame({"obs_id": pd.Series([], dtype=str)})
            FragmentTable(files.join(uri, "obs"), "obs_id", storage).append(empty, base=True)
            files.write_json_atomic(
                marker,
                {
                    "format": FORMAT,
                    "version": 1,
                    "layout": LAYOUT,
                    "name": name,
                    "backend": opts.backend,
                    "catalog": 1,
                    **({building.STORE_KEY: building.record()} if being_built else {}),
                },
                storage,
            )
        return cls(uri, storage=storage)

    @classmethod
    def from_items(
        cls,
        uri: str | os.PathLike[str],
        items: Iterable[IngestItem],
        *,
        name: str | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        progress: bool = False,
    ) -> VolumeCollection:
        """Creates a collection and writes ``items`` into it (the bulk path every ``from_*`` uses).

        All or nothing: when an item fails (or the call is interrupted), what this call created is
        removed (the whole folder when it did not exist) and the error is raised, so a retry on
        the same path starts afresh. ``StoreExistsError`` (nothing touched) when a collection exists.
        A process killed mid-way leaves a collection that others are refused
        (``IncompleteStoreError``) and that the same call run again removes first.
        """
        uri = as_location(uri)
        storage = storage or StorageOptions()
        building.clear_abandoned_store(uri, storage, MARKER)  # a killed constructor's leftover
        target = NewTarget.before(uri, storage)
        coll = cls.create(uri, name=name, options=options, storage=storage, being_built=True)  # ours from here on
        with target.removed_on_failure():
            coll.write(items, options=options, progress=progress)
            coll.compact()
            building.set_building(uri, storage, None, False, MARKER)  # the last step: complete
        return coll

    @classmethod
    def from_images(
        cls,
        uri: str | os.PathLike[str],
        images: Mapping[str, ImageData],
        *,
        subject_ids: Mapping[str, str] | None = None,
        obs: pd.DataFrame | None = None,
        name: str | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
    ) -> VolumeCollection:
        """From ``{obs_id: ImageData}``; subjects default to the obs IDs; ``obs`` adds columns."""
        uri = as_location(uri)
        extra = _columns_by_id(obs)
        items = [
            IngestItem(k, (subject_ids or {}).get(k, k), img, extra.get(k, {}), img.source) for k, img in images.items()
        ]
        return cls.from_items(uri, items, name=name, options=options, storage=storage)

    @classmethod
    def from_volumes(
        cls,
        uri: str | os.PathLike[str],
        volumes: Mapping[str, Volume] | Iterable[Volume],
        *,
        subject_ids: Mapping[str, str] | None = None,
        obs: pd.DataFrame | None = None,
        name: str | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
    ) -> VolumeCollection:
        """Copies stored volumes (a mapping obs_id -> Volume, or Volumes that carry an obs_id)."""
        uri = as_location(uri)
        if not isinstance(volumes, Mapping):
            vols = list(volumes)
            missing = [v.uri for v in vols if v.obs_id is None]
            if missing:
                raise ValueError(f"volumes without obs_id need a mapping obs_id -> Volume: {missing[:3]}")
            volumes = {str(v.obs_id): v for v in vols}
        extra = _columns_by_id(obs)
        items = [
            IngestItem(k, (subject_ids or {}).get(k, k), v.to_image, extra.get(k, {}), v.info.source)
            for k, v in volumes.items()
        ]
        return cls.from_items(uri, items, name=name, options=options, storage=storage)

    def write(
        self,
        items: Iterable[IngestItem],
        *,
        options: WriteOptions | None = None,
        skip_existing: bool = False,
        replace_existing: bool = False,
        on_error: str = "raise",
        progress: bool | str = False,
        submitter: Submitter | None = None,
    ) -> IngestReport:
        """Writes more volumes into this collection (append). See ``radiobject.model.bulk.write_items``.

        ``replace_existing=True``: an obs ID already stored gets a new version, published
        atomically (status ``replaced``); ``skip_existing=True`` leaves it (status ``present``).

        ``submitter``: ``(submit, as_completed)`` of a process pool or a Dask client to write the
        volumes elsewhere (default: ``options.workers`` threads here).
        """
        opts = replace(options or WriteOptions(), backend=self.backend_name).for_collection(self.name)
        return write_items(
            self.uri,
            items,
            self.backend_name,
            self.location.storage,
            opts,
            existing=self._state.known_ids(),
            skip_existing=skip_existing,
            replace_existing=replace_existing,
            layout=self._state.layout,
            on_error=on_error,
            progress=progress,
            on_commit=self._state.committed,
            submitter=submitter,
        )

    def append(
        self,
        image: ImageData | Volume,
        obs_id: str,
        obs_subject_id: str | None = None,
        *,
        options: WriteOptions | None = None,
        **columns: Any,
    ) -> Volume:
        """Adds one volume; its cost does not depend on how many volumes exist."""
        img = image.to_image() if isinstance(image, Volume) else image
        self.write([IngestItem(obs_id, obs_subject_id or obs_id, img, columns, img.source)], options=options)
        return self._state_volume(obs_id)

    # ------------------------------------------------------------------ reading
    @property
    def name(self) -> str:
        return self._state.name

    @property
    def uri(self) -> str:
        return self._state.location.uri

    @property
    def location(self) -> StoreLocation:
        return self._state.location

    @property
    def backend_name(self) -> str:
        return self._state.backend

    @property
    def is_view(self) -> bool:
        return self._ids is not None

    @property
    def obs_ids(self) -> list[str]:
        if self._ids is not None:
            return list(self._ids)
        return self._state.obs["obs_id"].tolist()

    @property
    def obs(self) -> CatalogFrame:
        """One row per volume (of this view, in view order)."""
        df = self._state.obs
        if self._ids is not None:
            df = df.iloc[[self._state.position(i) for i in self._ids]].reset_index(drop=True)
        return CatalogFrame(df.copy())

    @property
    def obs_subject_ids(self) -> list[str]:
        """The subject of each volume, in order."""
        return self.obs["obs_subject_id"].tolist()

    @property
    def subject_ids(self) -> list[str]:
        """The distinct subjects, in order of first appearance."""
        return list(dict.fromkeys(self.obs_subject_ids))

    @property
    def label_map(self) -> Any:
        """The ``LabelMap`` of a label collection (value -> name, colour), or ``None``; set it with
        ``radiobject.model.labels.set_label_map``."""
        from radiobject.model.label_maps import get_label_map

        return get_label_map(self)

    def __len__(self) -> int:
        return len(self._ids) if self._ids is not None else len(self._state.obs)

    def __contains__(self, obs_id: object) -> bool:
        if self._ids is not None:
            idset = self.__dict__.get("_idset")
            if idset is None:  # built once per view: membership is O(1)
                idset = self.__dict__["_idset"] = frozenset(self._ids)
            return obs_id in idset
        self._state.obs  # noqa: B018 - loads the table and the index
        return obs_id in self._state._pos

    def __iter__(self) -> Iterator[Volume]:
        for k in self.obs_ids:
            yield self._state_volume(k)

    def __repr__(self) -> str:
        kind = "view of " if self.is_view else ""
        return f"VolumeCollection({kind}{self.uri!r}, name={self.name!r}, volumes={len(self)})"

    def _state_volume(self, obs_id: str) -> Volume:
        row = self._state.obs.iloc[self._state.position(obs_id)]
        info = VolumeInfo.from_row(row, self.backend_name)
        return Volume(self._state.volume_uri(obs_id, info.version), storage=self.location.storage, info=info)

    def volume(self, obs_id: str) -> Volume:
        """The volume with this obs ID (in this view)."""
        if self._ids is not None and obs_id not in self:
            raise NotFoundError("obs_id", obs_id, f"this view of {self.uri}")
        return self._state_volume(validate_id(obs_id))

    def by_subject(self, subject_id: str) -> Volume:
        """The single volume of a subject; ``NotFoundError`` / ``DuplicateIdError`` otherwise."""
        hits = [k for k in self._state.lookup()[1].get(subject_id, ()) if self._ids is None or k in self]
        if not hits:
            raise NotFoundError("subject", subject_id, f"collection {self.name!r}")
        if len(hits) > 1:
            raise DuplicateIdError("subject (several volumes)", subject_id, f"collection {self.name!r}")
        return self._state_volume(hits[0])

    def select(self, obs_ids: Sequence[str]) -> VolumeCollection:
        """A view with these obs IDs, in this order."""
        for k in obs_ids:
            if k not in self:
                raise NotFoundError("obs_id", k, f"collection {self.uri}")
        return VolumeCollection._view(self._state, list(obs_ids))

    def select_subjects(self, subject_ids: Sequence[str]) -> VolumeCollection:
        """A view with the volumes of these subjects (in subject order)."""
        order = {s: i for i, s in enumerate(subject_ids)}  # a repeated subject: its last place
        by_subject = self._state.lookup()[1]  # subject -> obs IDs, built once: O(len(subject_ids))
        keep = [
            k
            for s in sorted(order, key=order.__getitem__)
            for k in by_subject.get(s, ())
            if self._ids is None or k in self
        ]
        return VolumeCollection._view(self._state, keep)

    @property
    def iloc(self) -> Indexer[Volume, VolumeCollection]:
        """Position -> Volume; slice / list / mask -> view."""
        ids = self._ids if self._ids is not None else self._state.lookup()[0]  # no copy per call
        return Indexer(
            lambda i: self._state_volume(ids[i]),
            lambda ps: self.select([ids[p] for p in ps]),
            lambda key: positions(key, len(ids)),
        )

    @property
    def loc(self) -> Indexer[Volume, VolumeCollection]:
        """obs ID -> Volume; list of IDs -> view."""
        return Indexer(self.volume, self.select, lambda key: key if isinstance(key, str) else list(key))

    def to_collection(
        self, uri: str | os.PathLike[str], *, options: WriteOptions | None = None, storage: StorageOptions | None = None
    ) -> VolumeCollection:
        """Writes this collection (or view) as a new collection: geometry, dtype and obs kept."""
        uri = as_location(uri)
        items = [
            IngestItem(
                r["obs_id"],
                r["obs_subject_id"],
                self._state_volume(r["obs_id"]).to_image,
                {c: v for c, v in r.items() if c not in CATALOG_COLUMNS},
                str(r["source"]),
            )
            for r in self.obs.to_dict("records")
        ]
        return VolumeCollection.from_items(
            uri,
            items,
            name=self.name,
            options=options or WriteOptions(self.backend_name),
            storage=storage or self.location.storage,
        )


def _columns_by_id(obs: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    if obs is None:
        return {}
    if "obs_id" not in obs.columns:
        raise ValueError("obs must have an 'obs_id' column")
    return {str(r.pop("obs_id")): r for r in obs.to_dict("records")}
