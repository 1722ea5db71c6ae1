"""``RadiObject``: subjects x collections, with a subject table ``obs_meta``; views are subsets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from radiobject.errors import (
    NotFoundError,
    RadiObjectError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
)
from radiobject.formats.image import ImageData
from radiobject.model import engine
from radiobject.model.alignment import check_alignment, geometry_of
from radiobject.model.bulk import IngestItem, IngestReport, Submitter
from radiobject.model.collection import VolumeCollection
from radiobject.model.frames import CatalogFrame
from radiobject.model.ids import validate_collection_name, validate_id
from radiobject.model.indexing import Indexer, PositionMap, positions, single_chunk
from radiobject.model.checks import check_backend_name, check_marker
from radiobject.model.options import WriteOptions
from radiobject.model.paths import PathSpec
from radiobject.model.subject_filter import Condition, filter_mask
from radiobject.model.subjects import SUBJECT, subject_table
from radiobject.storage import files
from radiobject.storage.location import StoreLocation
from radiobject.storage.locks import write_lock
from radiobject.storage.options import StorageOptions
from radiobject.storage.registry import get_backend
from radiobject.storage.tables import FragmentTable

MARKER = "radiobject.json"
FORMAT = "radiobject"


class RadiObject:
    """A cohort store: ``obs_meta`` (one row per subject) and named ``VolumeCollection``s.

    ``RadiObject(uri)`` opens a store (backend detected). ``radi.T1w`` / ``radi["T1w"]`` give a
    collection restricted to this object's subjects; ``loc`` / ``iloc`` / ``filter`` give views
    whose collections contain only the view's subjects; ``view.to_radi_object(uri)`` writes one.
    """

    def __init__(self, uri: str, *, storage: StorageOptions | None = None) -> None:
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
        self._location = location
        self._backend: str = meta["backend"]
        self._subjects: tuple[str, ...] | None = None
        self._obs_meta: pd.DataFrame | None = None
        self._collections: dict[str, VolumeCollection] = {}
        self._names: list[str] | None = None

    def _view(self, subjects: Sequence[str]) -> "RadiObject":
        obj = RadiObject.__new__(RadiObject)
        obj.__dict__.update(self.__dict__)
        obj._subjects = tuple(subjects)
        obj._collections = self._collections  # shared cache of opened collections
        return obj

    @classmethod
    def open(cls, location: StoreLocation) -> "RadiObject":
        """Opens from a picklable location (use in worker processes)."""
        return cls(location.uri, storage=location.storage)

    # ---------------------------------------------------------------- creating
    @classmethod
    def create(cls, uri: str, *, options: WriteOptions | None = None, storage: StorageOptions | None = None,
               exist_ok: bool = False) -> "RadiObject":
        """Creates an empty store with the backend of ``options`` (recorded, detected on open)."""
        opts, storage = options or WriteOptions(), storage or StorageOptions()
        marker = files.join(uri, MARKER)
        if files.exists(marker, storage):
            if exist_ok:
                return cls(uri, storage=storage)
            raise StoreExistsError(uri, "a radiobject store already exists here")
        files.makedirs(uri, storage)
        with write_lock(uri, storage):  # two creators at once: one creates, the other sees it
            if files.exists(marker, storage):
                if exist_ok:
                    return cls(uri, storage=storage)
                raise StoreExistsError(uri, "a radiobject store already exists here")
            backend = get_backend(opts.backend, storage)
            backend.create_group(uri, {"radiobject": {"kind": "store", "version": 1}})
            backend.create_group(files.join(uri, "collections"), {"radiobject": {"kind": "collections"}})
            files.write_json_atomic(marker, {"format": FORMAT, "version": 1, "backend": opts.backend}, storage)
        return cls(uri, storage=storage)

    @classmethod
    def from_items(
        cls,
        uri: str,
        items: Mapping[str, Iterable[IngestItem]],
        *,
        obs_meta: pd.DataFrame | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        progress: bool = False,
    ) -> "RadiObject":
        """Creates a store from ``{collection: items}`` (the path every ``from_*`` takes)."""
        obs_meta = None if obs_meta is None else subject_table(obs_meta)  # checked before any write
        radi = cls.create(uri, options=options, storage=storage)
        for name, its in items.items():
            radi.add_collection(name, its, options=options, progress=progress)
        radi.add_subjects(obs_meta if obs_meta is not None else pd.DataFrame({SUBJECT: radi._collection_subjects()}))
        return cls(uri, storage=storage)

    @classmethod
    def from_volume_collections(
        cls,
        uri: str,
        collections: Mapping[str, VolumeCollection],
        *,
        obs_meta: pd.DataFrame | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
    ) -> "RadiObject":
        """Copies collections (or views) into a new store; subjects from ``obs_meta`` or the volumes."""
        items: dict[str, list[IngestItem]] = {}
        for name, coll in collections.items():
            items[name] = [
                IngestItem(r["obs_id"], r[SUBJECT], coll.volume(r["obs_id"]).to_image, {}, str(r.get("source", "")))
                for r in coll.obs.to_dict("records")
            ]
        return cls.from_items(uri, items, obs_meta=obs_meta, options=options, storage=storage)

    @classmethod
    def from_images(
        cls,
        uri: str,
        images: Mapping[str, Mapping[str, ImageData | Callable[[], ImageData]]],
        *,
        obs_meta: pd.DataFrame | None = None,
        validate_alignment: bool = True,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
    ) -> "RadiObject":
        """From ``{collection: {subject_id: ImageData or loader}}`` (obs ID = subject ID)."""
        if validate_alignment:
            check_alignment({c: {s: geometry_of(v) for s, v in per.items()} for c, per in images.items()})
        items = {c: [IngestItem(s, s, v, {}, getattr(v, "source", "")) for s, v in per.items()] for c, per in images.items()}
        return cls.from_items(uri, items, obs_meta=obs_meta, options=options, storage=storage)

    @classmethod
    def from_niftis(
        cls,
        uri: str,
        images: Mapping[str, PathSpec],
        *,
        obs_meta: pd.DataFrame | None = None,
        validate_alignment: bool = True,
        subject_pattern: str | None = None,
        reorient: bool = False,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        progress: bool = False,
    ) -> "RadiObject":
        """From NIfTI files per collection: a glob, a folder or a list each (see ``from_files``).

        ``reorient=True`` stores every volume in RAS+ axis order (off by default: as in the file).
        """
        return cls.from_files(uri, images, fmt="nifti", obs_meta=obs_meta, validate_alignment=validate_alignment,
                              subject_pattern=subject_pattern, canonical=reorient, options=options, storage=storage,
                              progress=progress)

    @classmethod
    def from_files(
        cls,
        uri: str,
        images: Mapping[str, PathSpec],
        *,
        fmt: str = "auto",
        obs_meta: pd.DataFrame | None = None,
        validate_alignment: bool = True,
        subject_pattern: str | None = None,
        canonical: bool = False,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        progress: bool = False,
    ) -> "RadiObject":
        """From image files per collection, each a glob, a folder or a list; the format (NIfTI,
        DICOM series folder, TIFF) is detected from each file's content unless ``fmt`` names one.

        Subject IDs come from what a glob's wildcard matched (``data/*/t1.nii.gz``), a
        ``subject_pattern`` regex, or the file name. With ``validate_alignment`` every subject's
        volumes must share shape and affine, checked before any pixel is written (from the header
        for NIfTI). ``canonical=True`` stores every volume in RAS+ axis order.
        """
        # the one ingest engine (radiobject.ingest, registered in radiobject.model.engine)
        return engine.store_from_files(uri, images, fmt=fmt, obs_meta=obs_meta, validate_alignment=validate_alignment,
                                subject_pattern=subject_pattern, canonical=canonical, options=options,
                                storage=storage, progress=progress)

    @classmethod
    def from_dicoms(
        cls,
        uri: str,
        images: Mapping[str, PathSpec],
        *,
        obs_meta: pd.DataFrame | None = None,
        subject_pattern: str | None = None,
        validate_alignment: bool = True,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        progress: bool = False,
    ) -> "RadiObject":
        """From DICOM series folders per collection (a glob such as ``"dicom/*/CT"`` or a list).

        Each matched folder holds one series; the subject ID is what the glob's wildcard matched
        (or ``subject_pattern``'s group). ``validate_alignment`` (on by default, as everywhere) reads
        every series twice. Geometry follows the DICOM reader (see ``formats.dicom``).
        """
        return cls.from_files(uri, images, fmt="dicom", obs_meta=obs_meta, validate_alignment=validate_alignment,
                              subject_pattern=subject_pattern, options=options, storage=storage, progress=progress)

    def add_collection(self, name: str, items: Iterable[IngestItem], *, options: WriteOptions | None = None,
                       skip_existing: bool = False, replace_existing: bool = False, on_error: str = "raise",
                       progress: bool | str = False, submitter: Submitter | None = None) -> IngestReport:
        """Creates (or extends) collection ``name`` with ``items``; see ``VolumeCollection.write``.

        Idempotent and race-free: N processes adding the same new collection at once create it
        once (under its write lock) and each commits its own volumes.
        """
        name = validate_collection_name(name)
        opts = replace(options or WriteOptions(), backend=self._backend)
        opts.for_collection(name)  # a lossy label collection is refused before anything is created
        files.check_no_symlinks(self.uri, self._coll_uri(name))  # never write through a planted link
        if name not in self._all_collection_names():  # the cached list may be stale: create is exist_ok
            VolumeCollection.create(self._coll_uri(name), name=name, options=opts, storage=self._location.storage,
                                    exist_ok=True)
            self._names = None
        return self._collection(name).write(
            items, options=opts, skip_existing=skip_existing, replace_existing=replace_existing, on_error=on_error,
            progress=name if progress is True else progress, submitter=submitter,
        )

    def replace_subject(self, subject_id: str, images: Mapping[str, ImageData],
                        options: WriteOptions | None = None) -> None:
        """Replaces the volume of ``subject_id`` in each named collection (``{collection: image}``).

        Each collection's replacement is one atomic commit (``VolumeCollection.replace``); the
        subject must have exactly one volume in each (``NotFoundError`` / ``DuplicateIdError``).
        """
        for name in images:
            if name not in self.collection_names:
                raise NotFoundError("collection", name, f"store {self.uri}")
        for name, image in images.items():
            coll = self._fresh_collection(name)
            coll.replace(str(coll.by_subject(subject_id).obs_id), image, options=options)

    def delete_subject(self, subject_id: str) -> None:
        """Removes a subject: its ``obs_meta`` row first, then its volumes, collection by collection.

        Each step is one atomic commit; readers that list subjects stop seeing it at the first.
        ``NotFoundError`` when the store has no such subject.
        """
        table = self._meta_table()
        with write_lock(self.uri, self._location.storage):
            if subject_id not in table.live_values(SUBJECT):
                raise NotFoundError("subject", subject_id, f"store {self.uri}")
            table.delete([subject_id])
        for name in self._all_collection_names():
            coll = self._fresh_collection(name)
            ids = [k for k, s in zip(coll.obs_ids, coll.obs_subject_ids, strict=True) if s == subject_id]
            if ids:
                coll.delete(ids)
        self._obs_meta = None

    def _fresh_collection(self, name: str) -> VolumeCollection:
        """The collection re-opened for a write (``UnsafePathError`` when it is reached by a link)."""
        files.check_no_symlinks(self.uri, self._coll_uri(name))
        self._collections.pop(name, None)
        return self._collection(name)

    def add_subjects(self, obs_meta: pd.DataFrame) -> None:
        """Adds (or updates) subject rows (see ``subject_table`` for the accepted ID columns)."""
        df = subject_table(obs_meta)
        known = set(df[SUBJECT]) | set(self._all_subjects())
        missing = [s for s in self._collection_subjects() if s not in known]
        if missing:
            df = pd.concat([df, pd.DataFrame({SUBJECT: missing})], ignore_index=True)
        if len(df):
            self._meta_table().append(df)
        self._obs_meta = None

    def compact(self) -> None:
        """Folds every table's fragments into one (faster opens after many appends)."""
        with write_lock(self.uri, self._location.storage):
            self._meta_table().compact()
        for name in self._all_collection_names():
            self._fresh_collection(name).compact()
        self._obs_meta = None

    # ------------------------------------------------------------------ reading
    def _meta_table(self) -> FragmentTable:
        return FragmentTable(files.join(self.uri, "obs_meta"), SUBJECT, self._location.storage)

    def _coll_uri(self, name: str) -> str:
        return files.join(self.uri, "collections", name)

    def _all_collection_names(self) -> list[str]:
        if self._names is None:
            root = files.join(self.uri, "collections")
            names = get_backend(self._backend, self._location.storage).members(root)
            self._names = [validate_collection_name(n) for n in names  # names read back are checked too
                           if files.exists(files.join(root, n, "collection.json"), self._location.storage)]
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

    def select(self, subject_ids: Sequence[str]) -> "RadiObject":
        """A view with these subjects, in this order."""
        known = self._subject_map()  # built once: each call costs O(len(subject_ids))
        self._root_map()  # built before the view copies this object's state, so views share it
        for s in subject_ids:
            if s not in known:
                raise NotFoundError("subject", s, f"store {self.uri}")
        return self._view(list(subject_ids))

    @property
    def loc(self) -> Indexer["RadiObject", "RadiObject"]:
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
            return list(ids[start:stop:key.step])
        arr = np.asarray(key)
        if arr.dtype == bool:  # radi.loc[radi.obs_meta["age"] > 50]
            ids = self._subject_map().ids
            return [ids[p] for p in positions(arr, len(ids))]  # type: ignore[union-attr]
        return list(key)

    @property
    def iloc(self) -> Indexer["RadiObject", "RadiObject"]:
        """Position (or slice / list / mask) -> view."""
        ids = self._subject_map().ids  # no copy per call
        return Indexer(lambda i: self.select([ids[i]]), lambda ps: self.select([ids[p] for p in ps]),
                       lambda key: positions(key, len(ids)))

    def filter(self, *conditions: Condition, **equals: Any) -> "RadiObject":
        """Subjects whose ``obs_meta`` rows meet every condition (no code is ``eval``-ed).

        ``radi.filter(site="A")``, ``radi.filter(("age", ">", 50), ("grade", "in", [2, 3]))``,
        or a boolean mask / callable ``df -> mask`` over ``obs_meta``.
        """
        meta = self.obs_meta
        mask = filter_mask(meta, conditions, equals)
        return self._view(meta.loc[mask, SUBJECT].tolist())

    def to_radi_object(self, uri: str, *, options: WriteOptions | None = None,
                       storage: StorageOptions | None = None) -> "RadiObject":
        """Writes this object (a view: only its subjects) as a new store, geometry intact."""
        colls = {name: self[name] for name in self.collection_names}
        return RadiObject.from_volume_collections(
            uri, colls, obs_meta=self.obs_meta, options=options or WriteOptions(self._backend),
            storage=storage or self._location.storage,
        )
