"""How new volumes are written: backend, chunking, codec. Immutable; passed explicitly, never global."""

from __future__ import annotations

from dataclasses import dataclass

from radiobject.storage.base import Codec
from radiobject.storage.registry import BACKEND_NAMES, DEFAULT_BACKEND


@dataclass(frozen=True)
class WriteOptions:
    """Settings for writing volumes.

    Attributes:
        backend: ``"zarr"`` (default, measured faster) or ``"tiledb"``; fixed per store at creation.
        chunks: inner chunk (tile) shape for 3D volumes; ``None`` = isotropic default (see
            ``radiobject.storage.base.DEFAULT_CHUNK_EDGE``), clipped to each volume's shape.
        codec: lossless compression.
        workers: threads writing volumes in parallel during bulk ingest.
        commit_every: volumes per committed ``obs`` fragment during bulk ingest (crash-safety grain).
    """

    backend: str = DEFAULT_BACKEND
    chunks: tuple[int, ...] | None = None
    codec: Codec = Codec()
    workers: int = 2
    commit_every: int = 16

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKEND_NAMES)}")
        if self.workers < 1 or self.commit_every < 1:
            raise ValueError("workers and commit_every must be >= 1")
