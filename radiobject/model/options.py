"""How new volumes are written: backend, chunking, codec. Immutable; passed explicitly, never global."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from radiobject.model.lossy import Lossy, check_lossy_collection
from radiobject.storage.base import Codec
from radiobject.storage.registry import BACKEND_NAMES, DEFAULT_BACKEND

#: Seconds one source may take to be read and decoded during ingest (``WriteOptions.item_timeout_s``).
DEFAULT_ITEM_TIMEOUT_S = 900.0
#: Environment variable that sets the default item time limit (seconds; 0 = no limit).
ITEM_TIMEOUT_ENV = "RADIOBJECT_ITEM_TIMEOUT"


def item_timeout(value: float | str | None) -> float | None:
    """A per-item time limit as seconds, or ``None`` for no limit (``None``, 0 or inf).

    Raises:
        ValueError: a negative, NaN or non-numeric value.
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"item timeout must be a number of seconds, not {value!r}") from None
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"item timeout must be >= 0 seconds (0 = no limit), not {value!r}")
    return None if seconds == 0 or math.isinf(seconds) else seconds


def default_item_timeout() -> float | None:
    """``$RADIOBJECT_ITEM_TIMEOUT`` (seconds, 0 = no limit), else :data:`DEFAULT_ITEM_TIMEOUT_S`.

    Raises:
        ValueError: the variable is set to something that is not a number of seconds >= 0.
    """
    env = os.environ.get(ITEM_TIMEOUT_ENV, "").strip()
    if not env:
        return DEFAULT_ITEM_TIMEOUT_S
    try:
        return item_timeout(env)
    except ValueError as exc:
        raise ValueError(f"{ITEM_TIMEOUT_ENV}: {exc}") from None


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
        lossy: precision reduction before the lossless codec (``radiobject.model.lossy``): one
            :class:`~radiobject.model.lossy.Lossy` for every collection written with these options,
            or ``{collection: Lossy}`` for some of them. ``None`` (default): bit-exact. A label
            collection is refused with ``LossyLabelError``.
        item_timeout_s: seconds one source may take to be read and decoded during ingest (a hung
            network mount); past it that item fails with ``SourceTimeoutError`` naming the file
            and the rest goes on (``radiobject.model.bulk.load_within``). Default
            ``$RADIOBJECT_ITEM_TIMEOUT``, else :data:`DEFAULT_ITEM_TIMEOUT_S` (900 s); ``None``
            or 0: no limit.
    """

    backend: str = DEFAULT_BACKEND
    chunks: tuple[int, ...] | None = None
    codec: Codec = Codec()
    workers: int = 2
    commit_every: int = 16
    lossy: Lossy | Mapping[str, Lossy] | tuple[tuple[str, Lossy], ...] | None = None
    item_timeout_s: float | None = field(default_factory=default_item_timeout)

    def __post_init__(self) -> None:
        object.__setattr__(self, "item_timeout_s", item_timeout(self.item_timeout_s))
        if isinstance(self.lossy, Mapping):  # stored as sorted pairs: the options stay hashable
            object.__setattr__(self, "lossy", tuple(sorted(self.lossy.items())))
        if isinstance(self.lossy, tuple):
            for name, setting in self.lossy:
                if not isinstance(setting, Lossy):
                    raise TypeError(f"lossy[{name!r}] must be a Lossy, not {type(setting).__name__}")
        elif self.lossy is not None and not isinstance(self.lossy, Lossy):
            raise TypeError(f"lossy must be a Lossy or {{collection: Lossy}}, not {type(self.lossy).__name__}")
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKEND_NAMES)}")
        if self.workers < 1 or self.commit_every < 1:
            raise ValueError("workers and commit_every must be >= 1")

    def for_collection(self, name: str) -> WriteOptions:
        """These options for collection ``name``: ``lossy`` resolved to its ``Lossy`` (or ``None``).

        Raises:
            LossyLabelError: lossy storage is asked for a collection named as a label collection.
        """
        lossy: Lossy | None
        if isinstance(self.lossy, tuple):
            lossy = dict(self.lossy).get(name)
        else:
            lossy = self.lossy if isinstance(self.lossy, Lossy) else None
        check_lossy_collection(name, lossy)
        return self if lossy is self.lossy else replace(self, lossy=lossy)
