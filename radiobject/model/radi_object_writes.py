"""Writing a store: the constructors (from items, collections, in-memory images, files) and the
changes (add a collection, add subjects, replace or delete a subject, compact).

A mixin of ``RadiObject``: file constructors are thin calls into the one ingest engine
(``radiobject.model.engine``); every change is one atomic commit under the store's write lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Self, Unpack

import pandas as pd

from radiobject.errors import NotFoundError, StoreExistsError
from radiobject.formats.image import ImageData
from radiobject.model import building, building_collection, engine
from radiobject.model.alignment import check_alignment, geometry_of
from radiobject.model.building import MARKER
from radiobject.model.bulk import IngestItem, IngestReport, Submitter, checked_items
from radiobject.model.collection import VolumeCollection
from radiobject.model.collection_writes import NewTarget
from radiobject.model.file_ingest import StoreIngest, StoreKeywords
from radiobject.model.ids import validate_collection_name
from radiobject.model.options import WriteOptions
from radiobject.model.paths import CollectionSpec
from radiobject.model.subjects import SUBJECT, subject_table
from radiobject.storage import files
from radiobject.storage.locks import write_lock
from radiobject.storage.options import StorageOptions, as_location
from radiobject.storage.registry import get_backend

FORMAT = "radiobject"

if TYPE_CHECKING:
    from radiobject.model.radi_object import RadiObject
    from radiobject.storage.location import StoreLocation
    from radiobject.storage.tables import FragmentTable


class RadiObjectWrites:
    """Constructors and changes of :class:`~radiobject.model.radi_object.RadiObject`."""

    if TYPE_CHECKING:  # provided by RadiObject
        _location: StoreLocation
        _collections: dict[str, VolumeCollection]
        _names: list[str] | None
        _recorded: list[str] | None
        _obs_meta: pd.DataFrame | None

        @property
        def uri(self) -> str: ...

        @property
        def collection_names(self) -> list[str]: ...

        def _coll_uri(self, name: str) -> str: ...

        def _all_collection_names(self) -> list[str]: ...

        def _listed_collection_names(self) -> list[str]: ...

        def _collection(self, name: str) -> VolumeCollection: ...

        def _meta_table(self) -> FragmentTable: ...

        def _all_subjects(self) -> list[str]: ...

        def _collection_subjects(self) -> list[str]: ...

        def __init__(self, uri: str | os.PathLike[str], *, storage: StorageOptions | None = None) -> None: ...

        _backend: str

    @classmethod
    def create(
        cls,
        uri: str | os.PathLike[str],
        *,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        exist_ok: bool = False,
        being_built: bool = False,
    ) -> Self:
        """Creates an empty store with the backend of ``options`` (recorded, detected on open);
        ``being_built``: recorded as built by this process (``radiobject.model.building``)."""
        uri = as_location(uri)
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
            meta = {"format": FORMAT, "version": 1, "backend": opts.backend, "collections": []}
            files.write_json_atomic(
                marker, {**meta, building.STORE_KEY: building.record()} if being_built else meta, storage
            )
        return cls(uri, storage=storage)

    @classmethod
    def from_items(
        cls,
        uri: str | os.PathLike[str],
        items: Mapping[str, Iterable[IngestItem]],
        *,
        obs_meta: pd.DataFrame | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        progress: bool = False,
    ) -> Self:
        """Creates a store from ``{collection: items}`` (the path every ``from_*`` takes).

        All or nothing: when an item fails (or the call is interrupted), the store this call
        created is removed and the error is raised, so a retry on the same path starts afresh.
        """
        uri = as_location(uri)
        storage = storage or StorageOptions()
        obs_meta = None if obs_meta is None else subject_table(obs_meta)  # checked before any write
        building.clear_abandoned_store(uri, storage)  # a killed constructor's leftover (see model.building)
        target = NewTarget.before(uri, storage)
        radi = cls.create(uri, options=options, storage=storage, being_built=True)  # StoreExistsError: untouched
        with target.removed_on_failure():
            for name, its in items.items():
                radi.add_collection(name, its, options=options, progress=progress)
            subjects = obs_meta if obs_meta is not None else pd.DataFrame({SUBJECT: radi._collection_subjects()})
            radi.add_subjects(subjects)
            building.set_building(uri, storage, None, False)
        return cls(uri, storage=storage)

    @classmethod
    def from_volume_collections(
        cls,
        uri: str | os.PathLike[str],
        collections: Mapping[str, VolumeCollection],
        *,
        obs_meta: pd.DataFrame | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
    ) -> Self:
        """Copies collections (or views) into a new store; subjects from ``obs_meta`` or the volumes."""
        uri = as_location(uri)
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
        uri: str | os.PathLike[str],
        images: Mapping[str, Mapping[str, ImageData | Callable[[], ImageData]]],
        *,
        obs_meta: pd.DataFrame | None = None,
        validate_alignment: bool = True,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
    ) -> Self:
        """From ``{collection: {subject_id: ImageData or loader}}`` (obs ID = subject ID)."""
        uri = as_location(uri)
        if validate_alignment:
            check_alignment({c: {s: geometry_of(v) for s, v in per.items()} for c, per in images.items()})
        items = {
            c: [IngestItem(s, s, v, {}, getattr(v, "source", "")) for s, v in per.items()] for c, per in images.items()
        }
        return cls.from_items(uri, items, obs_meta=obs_meta, options=options, storage=storage)

    @classmethod
    def from_niftis(
        cls,
        uri: str | os.PathLike[str],
        images: Mapping[str, CollectionSpec],
        *,
        reorient: bool = False,
        **kw: Unpack[StoreKeywords],
    ) -> RadiObject:
        """From NIfTI files per collection: a glob, a folder or a list each (see ``from_files``).

        ``reorient=True`` stores every volume in RAS+ axis order (off by default: as in the file);
        ``**kw``: ``StoreKeywords`` (``obs_meta``, ``validate_alignment``, ``subject_pattern``,
        ``options``, ``storage``, ``progress``).
        """
        uri = as_location(uri)
        return engine.store_from_files(uri, images, StoreIngest(fmt="nifti", canonical=reorient, **kw))

    @classmethod
    def from_files(
        cls,
        uri: str | os.PathLike[str],
        images: Mapping[str, CollectionSpec],
        *,
        fmt: str = "auto",
        canonical: bool = False,
        tiff_series: int | None = None,
        **kw: Unpack[StoreKeywords],
    ) -> RadiObject:
        """From image files per collection, each a glob, a folder or a list; the format (NIfTI,
        DICOM series folder, TIFF) is detected from each file's content unless ``fmt`` names one.

        Subject IDs come from what a glob's wildcard matched (``data/*/t1.nii.gz``), a
        ``subject_pattern`` regex, or the file name. With ``validate_alignment`` (the default)
        every subject's volumes must share shape and affine, checked before any pixel is written
        (from the header for NIfTI). ``canonical=True`` stores every volume in RAS+ axis order.
        ``tiff_series``: the series read of every TIFF (CLI ``--tiff-series N``); ``None`` (default)
        = each TIFF's one image series, and a TIFF of several image series (a multi-image OME-TIFF,
        pages of several shapes) is refused before anything is written, with an ``ImageReadError``
        listing them; a negative one, or one with ``fmt="nifti"`` / ``"dicom"``, is a ``ValueError``.
        ``**kw``: ``StoreKeywords`` (``obs_meta``, ``validate_alignment``, ``subject_pattern``,
        ``options``, ``storage``, ``progress``).
        """
        # the one ingest engine (radiobject.ingest, registered in radiobject.model.engine)
        uri = as_location(uri)
        ingest = StoreIngest(fmt=fmt, canonical=canonical, tiff_series=tiff_series, **kw)
        return engine.store_from_files(uri, images, ingest)

    @classmethod
    def from_dicoms(
        cls, uri: str | os.PathLike[str], images: Mapping[str, CollectionSpec], **kw: Unpack[StoreKeywords]
    ) -> RadiObject:
        """From DICOM series folders per collection (a glob such as ``"dicom/*/CT"`` or a list).

        Each matched folder holds one series; the subject ID is what the glob's wildcard matched
        (or ``subject_pattern``'s group). ``validate_alignment`` (on by default, as everywhere) reads
        every series twice. Geometry follows the DICOM reader (see ``formats.dicom``). ``**kw``:
        ``StoreKeywords`` (``obs_meta``, ``validate_alignment``, ``subject_pattern``, ``options``,
        ``storage``, ``progress``).
        """
        uri = as_location(uri)
        return engine.store_from_files(uri, images, StoreIngest(fmt="dicom", **kw))

    def add_collection(
        self,
        name: str,
        items: Iterable[IngestItem],
        *,
        options: WriteOptions | None = None,
        skip_existing: bool = False,
        replace_existing: bool = False,
        on_error: str = "raise",
        progress: bool | str = False,
        submitter: Submitter | None = None,
    ) -> IngestReport:
        """Creates (or extends) collection ``name`` with ``items``; see ``VolumeCollection.write``.

        Idempotent and race-free: N processes adding the same new collection at once create it
        once (under its write lock) and each commits its own volumes. Into an existing store a
        failure is not undone (other writers may share the collection): the volumes committed
        before it stay, and so does a collection it created (recorded, possibly empty); a retry
        with ``skip_existing=True`` writes the rest.
        """
        name, opts = self._checked_collection(name, options)
        items = checked_items(self._coll_uri(name), items)  # a wrong argument creates nothing
        if name not in self._all_collection_names():  # the cached list may be stale: create is exist_ok
            VolumeCollection.create(
                self._coll_uri(name), name=name, options=opts, storage=self._location.storage, exist_ok=True
            )
            self._names = None
            self._record_collection(name)
        return self._collection(name).write(
            items,
            options=opts,
            skip_existing=skip_existing,
            replace_existing=replace_existing,
            on_error=on_error,
            progress=name if progress is True else progress,
            submitter=submitter,
        )

    @contextmanager
    def creating_collection(self, name: str, *, options: WriteOptions | None = None) -> Iterator[bool]:
        """Creates collection ``name`` for the block when the store lacks it; when the block raises
        (also ``KeyboardInterrupt``), removes it and its record again, so that a command deriving a
        collection (``resample``) leaves no partial one that looks complete and its retry starts
        afresh. Yields whether this call created it: one that existed before is never removed (one
        a killed process left unfinished is made afresh: see ``radiobject.model.building``)."""
        with building_collection.creating_collection(self, name, options) as created:
            yield created

    def _checked_collection(self, name: str, options: WriteOptions | None) -> tuple[str, WriteOptions]:
        """The checked name and the write options (of this store's backend) of a collection to create."""
        name = validate_collection_name(name)
        opts = replace(options or WriteOptions(), backend=self._backend)
        opts.for_collection(name)  # a lossy label collection is refused before anything is created
        files.check_no_symlinks(self.uri, self._coll_uri(name))  # never write through a planted link
        return name, opts

    def _record_collection(self, name: str, recorded: bool = True) -> None:
        """Adds ``name`` to (``recorded=False``: drops it from) the collections ``radiobject.json``
        records, under the store's write lock: a collection deleted later is an error rather than
        silently absent, and one a failed call created is dropped before it is removed (the store
        never names a missing collection; nor a builder of it). A store from before the record
        starts one with the collections it holds now."""

        def change(meta: dict) -> bool:
            names = meta.get("collections")
            if not isinstance(names, list):
                self._names = None
                names = sorted(set(self._listed_collection_names()))
            if not recorded and isinstance(meta.get(building.COLLECTIONS_KEY), dict):
                meta[building.COLLECTIONS_KEY].pop(name, None)
            if (name in names) == recorded:
                return not recorded
            meta["collections"] = [*names, name] if recorded else [n for n in names if n != name]
            self._recorded = list(meta["collections"])
            return True

        building.update_marker(self.uri, self._location.storage, change)
        if not recorded:
            self._names = None
            self._collections.pop(name, None)

    def replace_subject(
        self, subject_id: str, images: Mapping[str, ImageData], options: WriteOptions | None = None
    ) -> None:
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

    def drop_subject_columns(self, columns: Iterable[str]) -> None:
        """Removes ``columns`` from ``obs_meta`` (absent ones are ignored) in one atomic commit:
        the subject table is rewritten as one base fragment, as ``compact`` writes it (on
        ``s3://`` only while nobody else writes the table: the single-writer rule)."""
        drop = list(dict.fromkeys(columns))
        if SUBJECT in drop:
            raise ValueError(f"{SUBJECT!r} is the key of obs_meta and cannot be dropped")
        table = self._meta_table()
        with write_lock(table.uri, self._location.storage):  # no append between the read and the base
            df = table.read()
            drop = [c for c in drop if c in df.columns]
            if drop:
                table.append(df.drop(columns=drop), base=True)
        self._obs_meta = None

    def compact(self) -> None:
        """Folds every table's fragments into one (faster opens after many appends)."""
        with write_lock(self.uri, self._location.storage):
            self._meta_table().compact()
        for name in self._all_collection_names():
            self._fresh_collection(name).compact()
        self._obs_meta = None

    # ------------------------------------------------------------------ reading
