"""Catalog tables (``obs``, ``obs_meta``) as append-only Parquet fragments.

Appending writes one new fragment: its cost does not depend on how many rows exist (no table is
rewritten). A fragment is written atomically and is the commit point of the rows it holds, so a
reader never sees a volume whose table row is not complete. ``compact`` folds fragments into one.
"""

from __future__ import annotations

import io
import time
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from radiobject.storage import files
from radiobject.storage.options import StorageOptions

_PREFIX, _SUFFIX = "part-", ".parquet"


class FragmentTable:
    """A table stored as Parquet fragments under ``uri``, with ``key`` as its unique column."""

    def __init__(self, uri: str, key: str, storage: StorageOptions | None = None) -> None:
        self.uri, self.key = uri, key
        self.storage = storage or StorageOptions()

    def fragments(self) -> list[str]:
        """Fragment names in commit order."""
        return [n for n in files.listdir(self.uri, self.storage) if n.startswith(_PREFIX) and n.endswith(_SUFFIX)]

    def append(self, df: pd.DataFrame) -> str:
        """Commits ``df`` as one new fragment; returns its name."""
        if self.key not in df.columns:
            raise ValueError(f"table {self.uri} needs a {self.key!r} column")
        name = f"{_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{_SUFFIX}"
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False), buf)
        files.makedirs(self.uri, self.storage)
        files.write_bytes_atomic(files.join(self.uri, name), buf.getvalue(), self.storage)
        return name

    def read(self) -> pd.DataFrame:
        """All rows in commit order; a key written twice keeps its latest row."""
        parts = [pq.read_table(io.BytesIO(files.read_bytes(files.join(self.uri, n), self.storage))) for n in self.fragments()]
        if not parts:
            return pd.DataFrame({self.key: pd.Series([], dtype=str)})
        table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
        df = table.to_pandas()
        if df[self.key].duplicated().any():
            df = df.drop_duplicates(self.key, keep="last")
        return df.reset_index(drop=True)

    def compact(self) -> None:
        """Rewrites all fragments as one (readers in between see duplicates resolved by key)."""
        old = self.fragments()
        if len(old) <= 1:
            return
        self.append(self.read())
        for name in old:
            files.remove(files.join(self.uri, name), self.storage)
