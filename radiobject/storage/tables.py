"""Catalog tables (``obs``, ``obs_meta``) as append-only Parquet fragments.

Appending writes one new fragment: its cost does not depend on how many rows exist (no table is
rewritten). A fragment is written atomically (temporary name, then rename; one PUT on S3) and is
the commit point of the rows it holds, so a reader never sees a volume whose row is not complete.
A key written again keeps its latest row; a *tombstone* row (``TOMBSTONE`` true) deletes its key.

Readers never see a half-published catalog: ``compact`` first publishes the folded fragment (a
*base*, ``part-<time>-<id>-base...``, sorting after every fragment it folds) and only then removes
the folded ones. A reader starts from the latest base in its listing and ignores anything older,
so a listing taken during the removal resolves to exactly the rows of the base plus later
appends; a fragment that vanishes between a listing and its read makes the reader list again.
Fragments are immutable, so each one is read (and parsed) once per table object.

A fragment that is gone (deleted, renamed, never fully uploaded) is a ``CorruptDataError``
naming the table and the fragment: each commit also replaces a head record naming the newest
fragment, and each fragment names its predecessor (see :mod:`radiobject.storage.table_head`).
"""

from __future__ import annotations

import io
import time
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from radiobject.errors import CorruptDataError, StoreError
from radiobject.storage import files
from radiobject.storage.checksums import check_fragment, fragment_name_digest
from radiobject.storage.locks import write_lock
from radiobject.storage.options import StorageOptions
from radiobject.storage.parquet_bytes import read_parquet
from radiobject.storage.table_head import BASE as _BASE
from radiobject.storage.table_head import PREFIX as _PREFIX
from radiobject.storage.table_head import (
    Head,
    Link,
    covered,
    first_link,
    is_fragment,
    problems,
    read_head,
    read_link,
    visible,
    write_head,
)

#: The reserved column that marks a row as the deletion of its key.
TOMBSTONE = "_deleted"
_RETRIES = 50


def _stamp(name: str) -> int:
    try:
        return int(name[len(_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return 0


class FragmentTable:
    """A table stored as Parquet fragments under ``uri``, with ``key`` as its unique column."""

    def __init__(self, uri: str, key: str, storage: StorageOptions | None = None) -> None:
        self.uri, self.key = uri, key
        self.storage = storage or StorageOptions()
        self._parts: dict[str, pa.Table] = {}
        self._live: tuple[str, tuple[str, ...], dict[str, object]] | None = None

    def fragments(self) -> list[str]:
        """Fragment names in commit order."""
        return [n for n in files.listdir(self.uri, self.storage) if is_fragment(n)]

    def append(self, df: pd.DataFrame, *, base: bool = False) -> str:
        """Commits ``df`` as one new fragment; returns its name.

        ``base=True`` (compaction only): ``df`` holds every row, readers ignore older fragments.

        The name sorts after every fragment listed now (commit order = name order, also when the
        clock steps back); callers that hold the store's write lock get a strict order.
        """
        if self.key not in df.columns:
            raise ValueError(f"table {self.uri} needs a {self.key!r} column")
        with write_lock(self.uri, self.storage):  # appends and compactions of one table never interleave
            return self._append(df, base)

    def _append(self, df: pd.DataFrame, base: bool) -> str:
        head = read_head(self.uri, self.storage)  # before the listing, as readers do
        names = self.fragments()
        if head is not None and head.latest not in names and not covered(head.latest, names):
            raise CorruptDataError(
                self.uri,
                f"missing table fragment {head.latest} (the newest one, named by "
                "the head record); not appending on top of a damaged table",
                part=head.latest,
            )
        prev = names[-1] if names else None
        before: Link | None = None
        if prev is not None and not base:
            if head is not None and head.latest == prev:  # the head holds its newest fragment's counts
                before = Link(None, head.seq, head.rows, head.base)
            else:  # a fragment committed without its head (a writer stopped in between), or legacy
                before = read_link(self._part(prev).schema.metadata, files.join(self.uri, prev), prev)
        link = (
            before.after(prev, len(df))
            if before is not None and prev is not None
            else first_link(prev, len(df), base=base)
        )
        table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **link.metadata()})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        digest = fragment_name_digest(buf.getvalue())  # checked on every read (integrity)
        last = max((_stamp(n) for n in names), default=0)
        stamp = max(time.time_ns(), last + 1)
        name = f"{_PREFIX}{stamp:020d}-{uuid.uuid4().hex[:12]}{_BASE if base else ''}{digest}.parquet"
        files.makedirs(self.uri, self.storage)
        files.write_bytes_atomic(files.join(self.uri, name), buf.getvalue(), self.storage)
        write_head(self.uri, Head.of(name, link), self.storage)  # after its fragment: never names a missing one
        return name

    def delete(self, keys: list[str]) -> str | None:
        """Commits tombstones for ``keys`` (one fragment); readers no longer see those rows."""
        if not keys:
            return None
        return self.append(pd.DataFrame({self.key: list(keys), TOMBSTONE: [True] * len(keys)}))

    def _part(self, name: str) -> pa.Table:
        part = self._parts.get(name)
        if part is None:
            uri = files.join(self.uri, name)
            data = files.read_bytes(uri, self.storage)
            check_fragment(name, data, uri)
            try:
                part = read_parquet(data)
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise CorruptDataError(uri, f"unreadable table fragment ({exc})", part=name) from None
            self._parts[name] = part
        return part

    def _snapshot(self) -> list[pa.Table]:
        """The fragments of one consistent listing (listed again when one vanished meanwhile)."""
        return self._snapshot_named()[0]

    def _snapshot_named(self) -> tuple[list[pa.Table], list[str]]:
        """``_snapshot`` with the fragment names it used; ``CorruptDataError`` when a fragment the
        head record or a fragment's link names is gone."""
        for attempt in range(_RETRIES):
            head = read_head(self.uri, self.storage)  # first: everything it names is listed, or folded
            listing = self.fragments()
            names = visible(listing)  # the latest base holds everything older
            try:
                parts = [self._part(n) for n in names]
            except FileNotFoundError:
                time.sleep(min(0.001 * 2**attempt, 0.1))  # a compaction removed it: list again
                continue
            named = dict(zip(names, parts, strict=True))
            links = {n: read_link(p.schema.metadata, files.join(self.uri, n), n) for n, p in named.items()}
            found = [
                f for f in problems(head, listing, links, {n: p.num_rows for n, p in named.items()}) if f[0] == "error"
            ]
            if found:
                _, part, reason = found[0]
                raise CorruptDataError(self.uri, reason, part=part)
            for stale in set(self._parts) - set(names):
                del self._parts[stale]
            return parts, names
        raise StoreError(self.uri, f"table fragments kept vanishing during {_RETRIES} listings")

    def live_values(self, column: str) -> dict[str, object]:
        """``{key: value of column}`` of the live keys, from a fresh listing.

        Incremental: when the listing only grew since the last call, only the new fragments are
        scanned (a bulk write checks this at every commit).
        """
        parts, names = self._snapshot_named()
        prev = self._live if self._live is not None and self._live[0] == column else None
        if prev is not None and tuple(names[: len(prev[1])]) == prev[1]:
            out, todo = dict(prev[2]), parts[len(prev[1]) :]
        else:
            out, todo = {}, parts
        for part in todo:
            cols = part.column_names
            keys = part.column(self.key).to_pylist()
            vals = part.column(column).to_pylist() if column in cols else [None] * len(keys)
            dead = part.column(TOMBSTONE).to_pylist() if TOMBSTONE in cols else [None] * len(keys)
            for k, v, d in zip(keys, vals, dead, strict=True):
                if d:
                    out.pop(k, None)
                else:
                    out[k] = v
        self._live = (column, tuple(names), out)
        return dict(out)

    def read(self, *, tombstones: bool = False) -> pd.DataFrame:
        """All rows in commit order; a key written again keeps its latest row (at the place it was
        first written), deleted keys are gone.

        ``tombstones=True`` keeps the deletion rows (with ``TOMBSTONE`` true) instead.
        """
        parts = self._snapshot()
        if not parts:
            return pd.DataFrame({self.key: pd.Series([], dtype=str)})
        table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
        df = table.to_pandas()
        if df[self.key].duplicated().any():  # latest row of each key, at the key's first place
            order = {k: i for i, k in enumerate(df[self.key].drop_duplicates().tolist())}
            df = df.drop_duplicates(self.key, keep="last")
            df = df.iloc[df[self.key].map(order).argsort(kind="stable")]
        if TOMBSTONE in df.columns:
            dead = df[TOMBSTONE].fillna(False).astype(bool)
            if not tombstones:
                df = df[~dead].drop(columns=[TOMBSTONE])
        for f in table.schema:  # an integer column read as float only because an older fragment lacked it
            if (
                pa.types.is_integer(f.type)
                and f.name in df.columns
                and df[f.name].dtype.kind == "f"
                and df[f.name].notna().all()
            ):
                df[f.name] = df[f.name].astype(f.type.to_pandas_dtype())
        return df.reset_index(drop=True)

    def compact(self) -> None:
        """Folds all fragments into one; the folded ones are removed only after it is published.

        Holds the table's lock (``.radiobject.lock`` in its folder; every ``append`` takes it too),
        so no append can fall between the read and the new base. On ``s3://`` there is no lock:
        compact only while nobody appends (docs/integrity.md, the single-writer rule).
        """
        with write_lock(self.uri, self.storage):
            self._compact()

    def _compact(self) -> None:
        old = self.fragments()
        if len(old) <= 1:
            return
        df = self.read()
        if TOMBSTONE in df.columns:
            df = df.drop(columns=[TOMBSTONE])
        self.append(df if len(df) else pd.DataFrame({self.key: pd.Series([], dtype=str)}), base=True)
        for name in old:  # readers start at the new base: these are invisible already
            files.remove(files.join(self.uri, name), self.storage)
            self._parts.pop(name, None)
