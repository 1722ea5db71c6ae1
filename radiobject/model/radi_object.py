"""``RadiObject``: subjects x collections, with a subject table ``obs_meta``; views are subsets."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from radiobject.errors import (
    CorruptDataError,
    NotFoundError,
    RadiObjectError,
    StoreError,
    StoreNotFoundError,
)
from radiobject.model import building
from radiobject.model.checks import check_backend_name, check_marker
from radiobject.model.collection import VolumeCollection
from radiobject.model.frames import CatalogFrame
from radiobject.model.ids import validate_collection_name, validate_id
from radiobject.model.indexing import Indexer, PositionMap, positions, single_chunk
from radiobject.model.options import WriteOptions
from radiobject.model.radi_object_writes import FORMAT, MARKER, RadiObjectWrites
from radiobject.model.subject_filter import Condition, filter_mask
from radiobject.model.subjects import SUBJECT
from radiobject.storage import files
from radiobject.storage.location import StoreLocation
from radiobject.storage.options import StorageOptions, as_location
from radiobject.storage.registry import get_backend
from radiobject.storage.tables import FragmentTable


class RadiObject(RadiObjectWrites):
    """A cohort store: ``obs_meta`` (one row per subject) and named ``VolumeCollection``s.

    ``RadiObject(uri)`` opens a store (backend detected). ``radi.T1w`` / ``radi["T1w"]`` give a
    collection restricted to this object's subjects; ``loc`` / ``iloc`` / ``filter`` give views
    whose collections contain only the view's subjects; ``view.to_radi_object(uri)`` writes one.
    """

    def __init__(self, uri: str | os.PathLike[str], *, storage: StorageOptions | None = None) -> None:
        uri = as_location(uri)
        location = StoreLocation(uri, storage or StorageOptions())
        try:
            meta = files.read_json(files.join(uri, MARKER), location.storage)
        except FileNotFoundError:
            raise StoreNotFoundError(uri, "no radiobject store here (radiobject.json missing)") from None
        except (NotADirectoryError, IsADirectoryError) as exc:  # a file given as the store, a folder as the marker
            raise StoreNotFoundError(uri, f"not a radiobject store ({exc.strerror}: {exc.filename})") from None
        except RadiObjectError:  # a remote failure, already typed and named
            raise
        except OSError as exc:
            raise StoreError(uri, f"cannot read {MARKER} ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StoreNotFoundError(uri, f"{MARKER} is not a radiobject store marker")
        check_marker(uri, meta, MARKER)  # a newer format is refused, never half-read
        check_backend_name(uri, meta.get("backend"), MARKER)
        building.check(uri, meta)  # still being built, or left unfinished by a killed constructor
        self._location = location
        self._backend: str = meta["backend"]
        self._subjects: tuple[str, ...] | None = None
        self._obs_meta: pd.DataFrame | None = None
        self._collections: dict[str, VolumeCollection] = {}
        self._names: list[str] | None = None
        recorded = meta.get("collections")
        #: The collections the marker records (``None``: a store from before the record).
        self._recorded: list[str] | None = [str(n) for n in recorded] if isinstance(recorded, list) else None
        self._building = meta.get(building.COLLECTIONS_KEY) or {}  # collections being built at open

    def _view(self, subjects: Sequence[str]) -> RadiObject:
        obj = RadiObject.__new__(RadiObject)
        obj.__dict__.update(self.__dict__)
        obj._subjects = tuple(subjects)
        obj._collections = self._collections  # shared cache of opened collections
        return obj

    @classmethod
    def open(cls, location: StoreLocation) -> RadiObject:
        """Opens from a picklable location (use in worker processes)."""
        return cls(location.uri, storage=location.storage)

    # ---------------------------------------------------------------- creating
    def _meta_table(self) -> FragmentTable:
        return FragmentTable(files.join(self.uri, "obs_meta"), SUBJECT, self._location.storage)

    def _coll_uri(self, name: str) -> str:
        return files.join(self.uri, "collections", name)

    def _listed_collection_names(self) -> list[str]:
        """The collections found under ``collections/`` (each with its marker), names checked."""
        root = files.join(self.uri, "collections")
        names = get_backend(self._backend, self._location.storage).members(root)
        return [
            validate_collection_name(n)
            for n in names  # names read back are checked too
            if files.exists(files.join(root, n, "collection.json"), self._location.storage)
        ]

    def _all_collection_names(self) -> list[str]:
        """The store's collections; one the marker records but the store lacks is a
        ``CorruptDataError`` (a deleted collection is never silently absent)."""
        if self._names is None:
            names = self._listed_collection_names()
            lost = [n for n in self._recorded or () if n not in names]
            if lost:
                raise CorruptDataError(
                    self.uri,
                    f"collection {lost[0]!r} is recorded in {MARKER} but missing"
                    + (f" (and {len(lost) - 1} more: {lost[1:]})" if len(lost) > 1 else ""),
                    part=f"collections/{lost[0]}",
                    store=self.uri,
                    collection=lost[0],
                )
            self._names = names
        return list(self._names)

    def _all_subjects(self) -> list[str]:
        return self._full_obs_meta()[SUBJECT].tolist()

    def _collection_subjects(self) -> list[str]:
        out: dict[str, None] = {}
        for name in self._all_collection_names():
            out.update(dict.fromkeys(self._collection(name).obs_subject_ids))
        return list(out)

    def _subject_map(self) -> PositionMap:
        """This object's subjects with an ``id -> position`` map, built once per open (or view)."""
        source: object = self._subjects if self._subjects is not None else self._root_map().source
        cached = self.__dict__.get("_pmap")
        if cached is None or cached.source is not source:
            ids = source if isinstance(source, tuple) else self._full_obs_meta()[SUBJECT].tolist()
            cached = self.__dict__["_pmap"] = PositionMap(ids, source)
        return cached

    def _root_map(self) -> PositionMap:
        """All stored subjects -> row of the full ``obs_meta`` (shared by the views made after it)."""
        df = self._full_obs_meta()
        cached = self.__dict__.get("_rmap")
        if cached is None or cached.source is not df:
            df = self._obs_meta = single_chunk(df)  # positional takes then cost O(rows taken)
            cached = self.__dict__["_rmap"] = PositionMap(df[SUBJECT].tolist(), df)
        return cached

    def _full_obs_meta(self) -> pd.DataFrame:
        if self._obs_meta is None:
            df = self._meta_table().read()
            for sid in df[SUBJECT].tolist() if SUBJECT in df.columns else ():  # a tampered table steers no path
                validate_id(sid, f"subject id in {files.join(self.uri, 'obs_meta')}")
            self._obs_meta = df
        return self._obs_meta

    def _collection(self, name: str) -> VolumeCollection:
        if name not in self._collections:
            if name in self._building:  # read again: it may have been finished since this store was opened
                meta = files.read_json(files.join(self.uri, MARKER), self._location.storage)
                building.check(self.uri, meta, name)
                self._building = meta.get(building.COLLECTIONS_KEY) or {}
            self._collections[name] = VolumeCollection(self._coll_uri(name), storage=self._location.storage)
        return self._collections[name]

    @property
    def uri(self) -> str:
        return self._location.uri

    @property
    def location(self) -> StoreLocation:
        return self._location

    @property
    def backend_name(self) -> str:
        return self._backend

    @property
    def is_view(self) -> bool:
        return self._subjects is not None

    @property
    def obs_subject_ids(self) -> list[str]:
        """Subject IDs of this object (a view: its subjects, in view order)."""
        return list(self._subjects) if self._subjects is not None else self._all_subjects()

    @property
    def obs_meta(self) -> CatalogFrame:
        """The subject table (pandas), restricted to and ordered like this object's subjects.

        ``radi.obs_meta.read()`` returns the same table (the spelling of radiobject 0.1).
        """
        df = self._full_obs_meta()
        if self._subjects is not None:
            pos = self._root_map().pos  # O(view size), not a re-index of the whole table
            df = df.iloc[[pos[s] for s in self._subjects]].reset_index(drop=True)
        return CatalogFrame(df.copy())

    @property
    def collection_names(self) -> list[str]:
        return self._all_collection_names()

    def __len__(self) -> int:
        return len(self.obs_subject_ids)

    def __iter__(self) -> Iterator[str]:
        """Collection names, as iterating a DataFrame gives its column labels (``len`` counts subjects, like rows)."""
        return iter(self.collection_names)

    def __contains__(self, name: object) -> bool:
        return name in self.collection_names

    def items(self) -> Iterator[tuple[str, VolumeCollection]]:
        """``(name, collection)`` pairs (restricted to this object's subjects), like ``DataFrame.items``."""
        for name in self.collection_names:
            yield name, self[name]

    def keys(self) -> list[str]:
        """Collection names, like ``DataFrame.keys`` (the column labels)."""
        return list(self.collection_names)

    def __repr__(self) -> str:
        kind = "view of " if self.is_view else ""
        return f"RadiObject({kind}{self.uri!r}, subjects={len(self)}, collections={self.collection_names})"

    def __getitem__(self, name: str) -> VolumeCollection:
        if name not in self.collection_names:
            raise NotFoundError("collection", name, f"store {self.uri}")
        coll = self._collection(name)
        return coll if self._subjects is None else coll.select_subjects(self._subjects)

    def __getattr__(self, name: str) -> VolumeCollection:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except NotFoundError:
            raise AttributeError(f"{type(self).__name__} has no attribute or collection {name!r}") from None

    def select(self, subject_ids: Sequence[str]) -> RadiObject:
        """A view with these subjects, in this order."""
        known = self._subject_map()  # built once: each call costs O(len(subject_ids))
        self._root_map()  # built before the view copies this object's state, so views share it
        for s in subject_ids:
            if s not in known:
                raise NotFoundError("subject", s, f"store {self.uri}")
        return self._view(list(subject_ids))

    @property
    def loc(self) -> Indexer[RadiObject, RadiObject]:
        """Subject ID (or list of IDs, or a boolean mask over ``obs_meta`` rows, as in pandas) -> view."""
        return Indexer(lambda s: self.select([s]), self.select, self._loc_key)

    def _loc_key(self, key: Any) -> str | list[str]:
        if callable(key):  # radi.loc[lambda meta: meta["age"] > 50], as in pandas
            key = key(self.obs_meta)
        if isinstance(key, str):
            return key
        if isinstance(key, slice):  # radi.loc["sub-01":"sub-05"]: by label, both ends included (pandas)
            ids = self._subject_map().ids
            where = {s: i for i, s in enumerate(ids)}
            for end in (key.start, key.stop):
                if end is not None and end not in where:
                    raise NotFoundError("subject", str(end), f"store {self.uri}")
            start = where[key.start] if key.start is not None else None
            stop = where[key.stop] + 1 if key.stop is not None else None
            return list(ids[start : stop : key.step])
        arr = np.asarray(key)
        if arr.dtype == bool:  # radi.loc[radi.obs_meta["age"] > 50]
            ids = self._subject_map().ids
            # the ignore below: a boolean mask gives a list (positions() returns int | list)
            return [ids[p] for p in positions(arr, len(ids))]  # type: ignore[union-attr]
        return list(key)

    @property
    def iloc(self) -> Indexer[RadiObject, RadiObject]:
        """Position (or slice / list / mask) -> view."""
        ids = self._subject_map().ids  # no copy per call
        return Indexer(
            lambda i: self.select([ids[i]]),
            lambda ps: self.select([ids[p] for p in ps]),
            lambda key: positions(key, len(ids)),
        )

    def filter(self, *conditions: Condition, **equals: Any) -> RadiObject:
        """Subjects whose ``obs_meta`` rows meet every condition (no code is ``eval``-ed).

        ``radi.filter(site="A")``, ``radi.filter(("age", ">", 50), ("grade", "in", [2, 3]))``,
        ``radi.filter("age > 50", "site == 'A'")`` (one comparison with a literal per string, parsed,
        not evaluated), or a boolean mask / callable ``df -> mask`` over ``obs_meta``. Anything else
        is a ``TypeError`` naming the accepted forms.
        """
        meta = self.obs_meta
        mask = filter_mask(meta, conditions, equals)
        return self._view(meta.loc[mask, SUBJECT].tolist())

    def to_radi_object(
        self, uri: str | os.PathLike[str], *, options: WriteOptions | None = None, storage: StorageOptions | None = None
    ) -> RadiObject:
        """Writes this object (a view: only its subjects) as a new store, geometry intact."""
        uri = as_location(uri)
        colls = {name: self[name] for name in self.collection_names}
        return RadiObject.from_volume_collections(
            uri,
            colls,
            obs_meta=self.obs_meta,
            options=options or WriteOptions(self._backend),
            storage=storage or self._location.storage,
        )
