"""Zarr reads in flight: split at inner-chunk boundaries so one read decodes on several cores, and
engine errors mapped to typed ones.

tensorstore decodes the inner chunks one read fetches from one shard in a single task: a read of a
volume stored as one shard (the default up to ``MAX_SHARD_VOXELS``) decodes on one core, whatever
the size of its thread pool. Sub-reads issued together run on the pool side by side. The pieces
are cut on inner-chunk boundaries, so no chunk is decoded twice; they land in disjoint parts of one
output array.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np

from radiobject.errors import CorruptDataError, RemoteStorageError, StoreError
from radiobject.storage.base import Region
from radiobject.storage.faults import remote_failure
from radiobject.storage.options import strip_file_scheme

__all__ = ["ZarrRead", "cores", "read_error", "split_region"]

#: A read is split only when it touches at least this many inner chunks per piece.
MIN_CHUNKS_PER_PIECE = 8


def cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return max(1, os.cpu_count() or 1)


def split_region(region: Region, chunks: tuple[int, ...], parts: int) -> list[Region]:
    """``region`` cut into at most ``parts`` pieces on inner-chunk boundaries of one axis.

    The axis is the one the region crosses the most chunks along (the first on ties, which keeps
    the pieces contiguous in a C-ordered output). A region is left whole when ``parts <= 1``, when
    it crosses a single chunk on every axis, or when a piece would hold fewer than
    ``MIN_CHUNKS_PER_PIECE`` chunks (the sub-read overhead would outweigh the parallel decode).
    The pieces, in order, cover ``region`` exactly once.
    """
    if parts <= 1 or len(chunks) != len(region):
        return [region]
    spans = [
        (r.stop - 1) // c - r.start // c + 1 if r.stop > r.start else 0 for r, c in zip(region, chunks, strict=True)
    ]
    total = math.prod(spans)
    axis = max(range(len(spans)), key=lambda a: (spans[a], -a))
    n = min(parts, spans[axis], total // MIN_CHUNKS_PER_PIECE)
    if n <= 1:
        return [region]
    r, c = region[axis], chunks[axis]
    first = r.start // c
    cuts = [r.start] + [(first + (spans[axis] * k) // n) * c for k in range(1, n)] + [r.stop]
    return [region[:axis] + (slice(a, b),) + region[axis + 1 :] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


#: tensorstore status codes that mean "the stored bytes are wrong" (others: I/O, permissions).
_DAMAGE_CODES = ("DATA_LOSS", "FAILED_PRECONDITION", "OUT_OF_RANGE", "INVALID_ARGUMENT")


_SHARD_ENTRY = re.compile(r'shard entry \{([^}]*)\}/\{[^}]*\} in [^"]*"([^"]+)"')


def read_error(uri: str, exc: Exception) -> StoreError:
    """The typed error for a tensorstore failure on ``uri``: remote, damaged data (naming the shard
    file and inner chunk when the engine says which), or another read failure."""
    text = str(exc)
    cause = remote_failure(exc)
    if cause is not None:
        return RemoteStorageError(uri, f"object storage failed after the configured timeout / retries: {cause}")
    if text.startswith(_DAMAGE_CODES) or "checksum" in text.lower() or "blosc" in text.lower():
        m = _SHARD_ENTRY.search(text)
        part = ""
        if m:
            path, root = m.group(2), os.path.abspath(strip_file_scheme(uri)).rstrip("/") + "/"
            part = f"{path[len(root) :] if path.startswith(root) else path} inner chunk ({m.group(1)})"
        return CorruptDataError(uri, f"damaged chunk data: {text.rsplit(': ', 1)[-1]}", part=part)
    return StoreError(uri, f"cannot read: {text}")


class ZarrRead:
    """A tensorstore read in flight into a numpy buffer (one future per piece of ``split_region``);
    ``result()`` maps engine errors to typed ones."""

    __slots__ = ("_futures", "_out", "_uri")

    def __init__(self, futures: list[Any], out: np.ndarray, uri: str) -> None:
        self._futures, self._out, self._uri = futures, out, uri

    def result(self) -> np.ndarray:
        try:
            for future in self._futures:
                future.result()
        except ValueError as exc:
            raise read_error(self._uri, exc) from None
        return self._out

    def cancel(self) -> bool:
        return all([bool(f.cancel()) for f in self._futures])

    def done(self) -> bool:
        return all(bool(f.done()) for f in self._futures)
