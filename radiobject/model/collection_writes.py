"""Changing stored volumes: replace, delete, compaction and garbage collection of old versions.

A mixin of ``VolumeCollection``: each change is one atomic catalog commit under the collection's
write lock (see ``radiobject.model.versions`` and docs/integrity.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from radiobject.errors import NotFoundError
from radiobject.formats.image import ImageData
from radiobject.model.bulk import IngestItem, IngestReport, Submitter
from radiobject.model.ids import validate_id
from radiobject.model.options import WriteOptions
from radiobject.model.versions import DEFAULT_GRACE_SECONDS, collect_garbage, record_superseded, relative
from radiobject.model.volume import Volume
from radiobject.model.volume_info import CATALOG_COLUMNS
from radiobject.storage import files
from radiobject.storage.location import StoreLocation
from radiobject.storage.locks import write_lock
from radiobject.storage.options import StorageOptions, is_remote, strip_file_scheme
from radiobject.storage.tables import FragmentTable

if TYPE_CHECKING:
    from radiobject.model.catalog import CatalogState


class VersionedWrites:
    """``replace``, ``delete``, ``compact`` and ``collect_garbage`` of a ``VolumeCollection``."""

    _state: CatalogState

    if TYPE_CHECKING:  # provided by VolumeCollection

        @property
        def uri(self) -> str: ...

        @property
        def location(self) -> StoreLocation: ...

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
        ) -> IngestReport: ...

        def _state_volume(self, obs_id: str) -> Volume: ...

    def compact(self, *, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> list[str]:
        """Folds the ``obs`` fragments into one (faster opening after many appends) and removes
        versions superseded more than ``grace_seconds`` ago (see ``collect_garbage``).

        Safe while readers open the collection (they never see a missing fragment) and while
        other processes write (it holds the write lock). Returns the removed version paths.
        """
        with write_lock(self.uri, self.location.storage):
            FragmentTable(files.join(self.uri, "obs"), "obs_id", self.location.storage).compact()
            removed = self._collect(grace_seconds)
        self._state.invalidate()
        return removed

    def collect_garbage(self, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> list[str]:
        """Removes replaced / deleted versions (and versions a crashed writer left) older than
        ``grace_seconds``; returns their paths relative to the collection.

        The rule: a reader that opened the catalog before a replace keeps reading the old version
        until it reopens; keep ``grace_seconds`` above the longest such use (default one hour;
        ``0`` only when no reader is open and no other process writes).
        """
        with write_lock(self.uri, self.location.storage):
            return self._collect(grace_seconds)

    def _collect(self, grace_seconds: float) -> list[str]:
        if self._state.layout < 2:
            return []
        table = FragmentTable(files.join(self.uri, "obs"), "obs_id", self.location.storage)
        referenced = {
            relative(self.uri, self._state.volume_uri(str(k), str(v))) for k, v in table.live_values("version").items()
        }
        return collect_garbage(self.uri, self.location.storage, referenced, grace_seconds)

    def replace(
        self,
        obs_id: str,
        image: ImageData | Volume,
        *,
        obs_subject_id: str | None = None,
        options: WriteOptions | None = None,
        **columns: Any,
    ) -> Volume:
        """Writes a new version of an existing volume and publishes it in one atomic step.

        Readers see the whole old or the whole new volume. The subject and the user columns of the
        old row are kept unless given. ``NotFoundError`` when ``obs_id`` is not stored.
        """
        oid = validate_id(obs_id)
        self._state.invalidate()  # fresh: another process may have changed it
        old = self._state.obs.iloc[self._state.position(oid)].to_dict()
        kept = {k: v for k, v in old.items() if k not in CATALOG_COLUMNS and not _missing(v)}
        img = image.to_image() if isinstance(image, Volume) else image
        item = IngestItem(oid, obs_subject_id or str(old["obs_subject_id"]), img, {**kept, **columns}, img.source)
        self.write([item], options=options, replace_existing=True)
        return self._state_volume(oid)

    def delete(self, obs_ids: str | Sequence[str]) -> None:
        """Removes volumes from the catalog in one atomic step (their data: by ``collect_garbage``).

        ``NotFoundError`` (and nothing deleted) when one of them is not stored.
        """
        ids = [validate_id(obs_ids)] if isinstance(obs_ids, str) else [validate_id(k) for k in obs_ids]
        table = FragmentTable(files.join(self.uri, "obs"), "obs_id", self.location.storage)
        with write_lock(self.uri, self.location.storage):
            current = table.live_values("version")
            for k in ids:
                if k not in current:
                    raise NotFoundError("obs_id", k, f"collection {self.uri}")
            if self._state.layout >= 2:
                record_superseded(
                    self.uri,
                    self.location.storage,
                    [relative(self.uri, self._state.volume_uri(k, str(current[k]))) for k in ids],
                )
            table.delete(ids)
        self._state.invalidate()


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists / arrays: present
        return False


@dataclass(frozen=True)
class NewTarget:
    """What lay at the path of a store or collection before a constructor (``from_*``) created it
    there, so that a constructor that fails removes what it created and nothing else.

    Take it with :meth:`before` just before the ``create`` that must succeed (``exist_ok=False``:
    the path is then this call's), and run the writes in :meth:`removed_on_failure`.
    """

    uri: str
    storage: StorageOptions
    entries: frozenset[str] | None  # the names in the folder before; None: there was no folder
    parents: tuple[str, ...]  # local folders above it that did not exist either (innermost first)

    @classmethod
    def before(cls, uri: str, storage: StorageOptions) -> NewTarget:
        """The state of ``uri`` now (its entries, and which local folders above it are missing)."""
        entries = frozenset(files.listdir(uri, storage)) if files.exists(uri, storage) else None
        parents: list[str] = []
        if entries is None and not is_remote(uri):
            here = os.path.dirname(os.path.abspath(strip_file_scheme(uri)))
            while here != os.path.dirname(here) and not os.path.lexists(here):
                parents.append(here)
                here = os.path.dirname(here)
        return cls(uri, storage, entries, tuple(parents))

    @contextmanager
    def removed_on_failure(self, first: Callable[[], None] | None = None) -> Iterator[None]:
        """Runs the block; when it raises (also ``KeyboardInterrupt``), runs ``first`` (e.g. drop
        the record that names the target, so that nothing names a removed path), removes what was
        created at ``uri`` since :meth:`before`, then re-raises. A failed removal is added to the
        error as a note, never raised instead of it."""
        try:
            yield
        except BaseException as exc:
            try:
                if first is not None:
                    first()
                self.remove()
            except Exception as cleanup:  # noqa: BLE001 - the write's error is the one to raise
                exc.add_note(f"the partial write at {self.uri} could not be removed: {cleanup}")
            raise

    def remove(self) -> None:
        """Removes the entries created since :meth:`before` (links themselves, never their targets),
        then the folder and the folders above it when this call created them and they are empty."""
        for name in files.listdir(self.uri, self.storage):
            if self.entries is None or name not in self.entries:
                files.remove(files.join(self.uri, name), self.storage)
        if self.entries is not None or is_remote(self.uri):
            return
        for folder in (os.path.abspath(strip_file_scheme(self.uri)), *self.parents):
            try:
                os.rmdir(folder)  # only when empty: something else put there is kept
            except OSError:
                return
