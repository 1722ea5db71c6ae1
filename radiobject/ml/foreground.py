"""Foreground indices stored beside each label volume: computed once (at ingest or first use), then read.

The index of label volume ``obs_id`` of collection ``C`` lives at
``{store}/collections/C/foreground/{obs_id}.npz`` (plain arrays, ``allow_pickle=False``), written
atomically through ``radiobject.storage.files`` so that several worker processes computing the
same index at once leave one whole file. A training run therefore never scans every mask at
start: the first sample of a subject loads (or builds and stores) that subject's index only.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from radiobject._os.forks import ForkSafeLock
from radiobject.ml.reader import VolumeReader
from radiobject.ml.sampling import DEFAULT_MAX_PER_CLASS, ForegroundIndex
from radiobject.storage import files

__all__ = [
    "FOLDER",
    "MEMO_BYTES",
    "MEMO_ENTRIES",
    "build_foreground_indices",
    "foreground_index",
    "foreground_uri",
    "load_foreground",
]

#: Folder under the label collection holding the indices.
FOLDER = "foreground"
#: Bumped when the stored layout changes (older files are recomputed).
VERSION = 1

#: Bytes of foreground indices each process keeps in memory (their index arrays plus
#: :data:`_ENTRY_OVERHEAD` per entry and label), least recently used dropped first: a label map
#: of many classes is ~80 KB per class (10,000 uint64 locations), so a count cap alone could pile
#: up gigabytes. An index larger than this is used but not kept.
MEMO_BYTES = 64 << 20
#: At most this many indices are kept, whatever their size.
MEMO_ENTRIES = 4096
_ENTRY_OVERHEAD = 256  # the key, the dataclass, the tuples and each array's header (approximate)

_MEMO: OrderedDict[tuple[int, str], tuple[ForegroundIndex, int]] = OrderedDict()
_MEMO_SIZE = [0]  # bytes held by _MEMO (under _LOCK)
_LOCK = ForkSafeLock()


def _nbytes(fg: ForegroundIndex) -> int:
    """What ``fg`` holds in memory, as counted against :data:`MEMO_BYTES`."""
    return _ENTRY_OVERHEAD * (1 + len(fg.labels)) + sum(int(a.nbytes) for a in fg.indices)


def _remember(key: tuple[int, str], fg: ForegroundIndex) -> None:
    """Keeps ``fg`` in the memo (under ``_LOCK``), dropping the least recently used to stay within
    :data:`MEMO_BYTES` / :data:`MEMO_ENTRIES`."""
    size = _nbytes(fg)
    old = _MEMO.pop(key, None)
    if old is not None:
        _MEMO_SIZE[0] -= old[1]
    if size > MEMO_BYTES:
        return
    _MEMO[key] = (fg, size)
    _MEMO_SIZE[0] += size
    while _MEMO_SIZE[0] > MEMO_BYTES or len(_MEMO) > MEMO_ENTRIES:
        _, (_, dropped) = _MEMO.popitem(last=False)
        _MEMO_SIZE[0] -= dropped


def foreground_uri(reader: VolumeReader, index: int) -> str:
    """Where the index of subject ``index``'s label volume is stored."""
    if reader.label is None:
        raise ValueError(f"{reader!r} has no label collection")
    coll_uri = files.join(reader.location.uri, "collections", reader.label)
    return files.join(coll_uri, FOLDER, f"{reader.obs_ids[index][-1]}.npz")


def load_foreground(uri: str, reader: VolumeReader, index: int, max_per_class: int) -> ForegroundIndex | None:
    """The stored index, or ``None`` when absent, stale (shape / version / cap differ) or damaged."""
    try:
        raw = files.read_bytes(uri, reader.location.storage)
    except FileNotFoundError:
        return None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if int(arrays.pop("version")) != VERSION or int(arrays.pop("max_per_class")) != max_per_class:
            return None
        fg = ForegroundIndex.from_arrays(arrays)
    except (ValueError, KeyError, OSError):
        return None
    return fg if fg.shape == tuple(reader.shapes[index]) else None


def _store(uri: str, reader: VolumeReader, fg: ForegroundIndex, max_per_class: int) -> None:
    buf = io.BytesIO()
    arrays: dict[str, Any] = {"version": np.int64(VERSION), "max_per_class": np.int64(max_per_class), **fg.to_arrays()}
    np.savez(buf, **arrays)
    files.write_bytes_atomic(uri, buf.getvalue(), reader.location.storage)


def _compute(reader: VolumeReader, index: int, max_per_class: int) -> ForegroundIndex:
    # the ignore below: only called for a reader with a label
    label = np.asarray(reader.read_raw(index, reader.label))  # type: ignore[arg-type]
    if label.ndim > 3:
        label = label.reshape(*label.shape[:3], -1)[..., 0]
    if label.dtype.kind == "f":
        label = np.rint(label).astype(np.int64)
    return ForegroundIndex.from_label(label, max_per_class=max_per_class)


def foreground_index(
    reader: VolumeReader, index: int, *, max_per_class: int = DEFAULT_MAX_PER_CLASS, write: bool = True
) -> ForegroundIndex:
    """The foreground index of subject ``index``'s label: memo -> stored file -> computed (and stored).

    Computing reads the label volume once (through the reader's cache, so the same decoded label
    serves the patches that follow). ``write=False`` keeps a computed index in memory only (e.g. a
    read-only store).
    """
    uri = foreground_uri(reader, index)
    key = (os.getpid(), uri + f"#{max_per_class}")
    with _LOCK:
        hit = _MEMO.get(key)
        if hit is not None:
            _MEMO.move_to_end(key)
            return hit[0]
    fg = load_foreground(uri, reader, index, max_per_class)
    if fg is None:
        fg = _compute(reader, index, max_per_class)
        if write:
            try:
                _store(uri, reader, fg, max_per_class)
            except OSError:  # read-only store: keep it in memory
                pass
    with _LOCK:
        _remember(key, fg)
    return fg


def build_foreground_indices(
    reader: VolumeReader,
    *,
    indices: Sequence[int] | None = None,
    max_per_class: int = DEFAULT_MAX_PER_CLASS,
    workers: int = 2,
    overwrite: bool = False,
) -> int:
    """Precomputes and stores the indices (e.g. right after ingest); returns how many were computed."""
    todo = list(range(len(reader))) if indices is None else list(indices)

    def one(i: int) -> int:
        uri = foreground_uri(reader, i)
        if not overwrite and load_foreground(uri, reader, i, max_per_class) is not None:
            return 0
        _store(uri, reader, _compute(reader, i, max_per_class), max_per_class)
        return 1

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sum(pool.map(one, todo))
