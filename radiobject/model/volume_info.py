"""What is known about a stored volume without reading its pixels: one catalog row."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radiobject import geometry
from radiobject.storage.base import ArraySpec, Codec

#: ``obs`` columns written by the store itself (user columns may not use these names).
CATALOG_COLUMNS: frozenset[str] = frozenset(
    {
        "obs_id",
        "obs_subject_id",
        "version",
        "shape",
        "dtype",
        "spacing",
        "orientation",
        "affine",
        "chunks",
        "codec",
        "source",
        "metadata",
    }
)


@dataclass(frozen=True)
class VolumeInfo:
    """Shape, dtype, geometry and provenance of one stored volume (an ``obs`` row)."""

    obs_id: str | None
    backend: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    affine_flat: tuple[float, ...]
    codec: Codec = Codec()
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    source: str = ""
    #: A new random token per write: part of cache keys, so a rewritten volume is never served stale.
    version: str = ""

    @property
    def sources(self) -> dict[str, Any] | None:
        """The source fingerprint recorded at ingest (``{"reader": ..., "files": [{path, size,
        mtime_ns, blake2b}, ...]}``; see ``radiobject.ingest.sources``), ``None`` for in-memory images."""
        record = self.metadata.get("sources")
        return dict(record) if isinstance(record, Mapping) else None

    @property
    def affine(self) -> np.ndarray:
        return np.array(self.affine_flat, dtype=np.float64).reshape(4, 4)

    @classmethod
    def from_attrs(cls, obs_id: str | None, backend: str, spec: ArraySpec, attrs: Mapping[str, Any]) -> VolumeInfo:
        """From an array's spec and stored attributes."""
        return cls(
            obs_id=obs_id if obs_id is not None else attrs.get("obs_id"),
            backend=backend,
            shape=tuple(int(s) for s in spec.shape),
            dtype=str(spec.dtype),
            chunks=tuple(int(c) for c in spec.chunks),
            affine_flat=tuple(float(v) for v in attrs["affine"]),
            codec=spec.codec,
            metadata=dict(attrs.get("metadata") or {}),
            source=str(attrs.get("source") or ""),
            version=str(attrs.get("version") or ""),
        )

    def to_row(self) -> dict[str, Any]:
        """The catalog (``obs``) columns describing this volume."""
        aff = self.affine
        return {
            "obs_id": self.obs_id,
            "version": self.version,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "spacing": list(geometry.spacing(aff)),
            "orientation": geometry.orientation(aff),
            "affine": list(self.affine_flat),
            "chunks": list(self.chunks),
            "codec": f"{self.codec.name}:{self.codec.level}",
            "source": self.source,
            "metadata": json.dumps(self.metadata, sort_keys=True),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any], backend: str) -> VolumeInfo:
        """Inverse of ``to_row``."""
        name, _, level = str(row["codec"]).partition(":")
        return cls(
            obs_id=str(row["obs_id"]),
            backend=backend,
            shape=tuple(int(s) for s in row["shape"]),
            dtype=str(row["dtype"]),
            chunks=tuple(int(c) for c in row["chunks"]),
            affine_flat=tuple(float(v) for v in row["affine"]),
            codec=Codec(name, int(level or 0)),
            metadata=json.loads(row["metadata"]) if row.get("metadata") else {},
            source=str(row.get("source") or ""),
            version=str(row.get("version") or ""),
        )
