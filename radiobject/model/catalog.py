"""The shared, cached state of one stored collection: its marker and its ``obs`` catalog.

All views of a collection share one ``CatalogState``; the catalog is read once per process and
kept current by this process's own commits, so an append never re-reads the table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from radiobject._os.forks import ForkSafeLock
from radiobject.errors import CorruptDataError, NotFoundError, RadiObjectError, StoreError, StoreNotFoundError
from radiobject.model import building
from radiobject.model.checks import check_backend_name, check_marker
from radiobject.model.indexing import single_chunk
from radiobject.model.versions import validate_rows, volume_uri
from radiobject.storage import files
from radiobject.storage.location import StoreLocation
from radiobject.storage.table_head import read_head
from radiobject.storage.tables import FragmentTable

#: Guards the lazy load and merges of every CatalogState in the process (rare, short).
_STATE_LOCK = ForkSafeLock(reentrant=True)

MARKER = "collection.json"
FORMAT = "radiobject-collection"


class CatalogState:
    """What all views of one stored collection share: location, settings, cached ``obs``."""

    def __init__(self, location: StoreLocation) -> None:
        try:
            meta = files.read_json(files.join(location.uri, MARKER), location.storage)
        except FileNotFoundError:
            raise StoreNotFoundError(location.uri, "no radiobject collection here") from None
        except (NotADirectoryError, IsADirectoryError) as exc:
            raise StoreNotFoundError(
                location.uri, f"not a radiobject collection ({exc.strerror}: {exc.filename})"
            ) from None
        except RadiObjectError:  # a remote failure, already typed and named
            raise
        except OSError as exc:
            raise StoreError(location.uri, f"cannot read {MARKER} ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StoreNotFoundError(location.uri, f"{MARKER} is not a radiobject collection marker")
        check_marker(location.uri, meta, MARKER)  # a newer format is refused, never half-read
        check_backend_name(location.uri, meta.get("backend"), MARKER)
        if not isinstance(meta.get("name"), str):
            raise CorruptDataError(location.uri, f"{MARKER} has no collection name", part=MARKER)
        entry = building.entry_of(meta)  # a standalone collection a constructor is building (or left)
        if entry is not None and not building.mine(entry):
            raise building.refusal(location.uri, entry, "this collection")
        self.location = location
        self.name: str = meta["name"]
        self.backend: str = meta["backend"]
        #: 2: versioned volume paths (``volumes/<obs_id>/<version>``); 1: ``volumes/<obs_id>``.
        self.layout: int = int(meta.get("layout", 1))
        #: The obs table was created with the collection: its head record must exist.
        self.catalog_required = bool(meta.get("catalog"))
        self._obs: pd.DataFrame | None = None
        self._pos: dict[str, int] = {}
        self._new_rows: list[dict[str, Any]] = []  # committed by this process, not merged yet
        self._new_ids: set[str] = set()

    def _load(self) -> None:
        if self._obs is not None:
            return
        with _STATE_LOCK:  # loader threads share one state: one reads, the others wait for both maps
            if self._obs is None:
                obs_uri = files.join(self.location.uri, "obs")
                if self.catalog_required and read_head(obs_uri, self.location.storage) is None:
                    raise CorruptDataError(
                        self.location.uri,
                        "the obs table (the collection's catalog) is missing: its head record is gone",
                        part="obs",
                        collection=self.name,
                    )
                df = FragmentTable(obs_uri, "obs_id", self.location.storage).read()
                if "obs_subject_id" not in df.columns:
                    df["obs_subject_id"] = pd.Series([], dtype=str)
                validate_rows(df, files.join(self.location.uri, "obs"), self.layout)
                self._pos = {k: i for i, k in enumerate(df["obs_id"].tolist())}
                self._obs = df  # published last: a reader that sees the table sees its index

    @property
    def obs(self) -> pd.DataFrame:
        self._load()
        if self._new_rows:
            with _STATE_LOCK:
                if self._new_rows:
                    assert self._obs is not None
                    start = len(self._obs)
                    merged = pd.concat([self._obs, pd.DataFrame(self._new_rows)], ignore_index=True)
                    self._pos.update({r["obs_id"]: start + i for i, r in enumerate(self._new_rows)})
                    self._obs = merged
                    self._new_rows, self._new_ids = [], set()
        assert self._obs is not None
        return self._obs

    def known_ids(self) -> KnownIds:
        """Committed obs IDs, kept current by this process's own commits (no re-read per append)."""
        self._load()
        return KnownIds(self)

    def committed(self, rows: list[dict[str, Any]]) -> None:
        """Records rows this process just committed (cheap: no table re-read)."""
        if self._obs is None:
            return
        self._new_rows.extend(rows)
        self._new_ids.update(r["obs_id"] for r in rows)

    def position(self, obs_id: str) -> int:
        self.obs  # noqa: B018 - loads the table and the index
        try:
            return self._pos[obs_id]
        except KeyError:
            raise NotFoundError("obs_id", obs_id, f"collection {self.location.uri}") from None

    def lookup(self) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
        """``(obs IDs in order, subject -> its obs IDs in order)``, built once per table state.

        Rebuilt only when the cached ``obs`` frame changes (a merge of new rows, a re-read), so
        per-call lookups (``iloc``, ``select_subjects``, ``by_subject``) do not scan the table.
        """
        df = self.obs
        cached = self.__dict__.get("_lookup")
        if cached is None or cached[0] is not df:
            df = self._obs = single_chunk(df)  # views' positional takes then cost O(rows taken)
            ids = tuple(df["obs_id"].tolist())
            by_subject: dict[str, list[str]] = {}
            for oid, sid in zip(ids, df["obs_subject_id"].tolist(), strict=True):
                by_subject.setdefault(sid, []).append(oid)
            cached = (df, ids, {k: tuple(v) for k, v in by_subject.items()})
            self.__dict__["_lookup"] = cached
        return cached[1], cached[2]

    def volume_uri(self, obs_id: str, version: str) -> str:
        """Where this collection keeps version ``version`` of volume ``obs_id``."""
        return volume_uri(self.location.uri, obs_id, version, self.layout)

    def invalidate(self) -> None:
        self._obs, self._pos, self._new_rows, self._new_ids = None, {}, [], set()


class KnownIds:
    """A live, read-only set view of a collection's committed obs IDs."""

    def __init__(self, state: CatalogState) -> None:
        self._state = state

    def __contains__(self, obs_id: object) -> bool:
        return obs_id in self._state._pos or obs_id in self._state._new_ids
