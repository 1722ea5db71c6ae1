"""Locating damage inside a Zarr shard: which inner chunk, or the shard index, fails its crc32c.

A shard (``sharding_indexed``, index at the end) is the encoded inner chunks followed by the index:
``(offset, nbytes)`` little-endian uint64 pairs, one per inner chunk in C order, then the index's
own crc32c. Every inner chunk ends with its crc32c. With every chunk stored (the writer stores
fill-value chunks too) the chunks and the index tile the file exactly, so every byte is covered.
"""

from __future__ import annotations

import itertools
import json
import math
import struct

import google_crc32c

from radiobject.errors import CorruptDataError
from radiobject.storage import files
from radiobject.storage.options import StorageOptions

_MISSING = (1 << 64) - 1


def _crc_ok(block: bytes) -> bool:
    return len(block) >= 4 and google_crc32c.value(block[:-4]) == struct.unpack("<I", block[-4:])[0]


def diagnose_shard(array_uri: str, rel: str, storage: StorageOptions) -> str:
    """What is wrong inside shard ``rel`` of the array: ``""`` when nothing is found (or it cannot
    be read), else e.g. ``"inner chunk (0, 1, 0) fails its crc32c"``."""
    try:
        meta = json.loads(files.read_bytes(files.join(array_uri, "zarr.json"), storage))
        cfg = meta["codecs"][0]["configuration"]
        grid = [
            s // c for s, c in zip(meta["chunk_grid"]["configuration"]["chunk_shape"], cfg["chunk_shape"], strict=True)
        ]
        data = files.read_bytes(files.join(array_uri, rel), storage)
    except CorruptDataError as exc:  # not a regular file
        return exc.reason
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return ""
    n = math.prod(grid)
    size = 16 * n + 4
    if len(data) < size:
        return f"shard is {len(data)} bytes, shorter than its {size}-byte index"
    index = data[-size:]
    if not _crc_ok(index):
        return "shard index fails its crc32c"
    pairs = struct.unpack(f"<{2 * n}Q", index[:-4])
    found, covered = [], 0
    for k, pos in enumerate(itertools.product(*(range(g) for g in grid))):
        off, nbytes = pairs[2 * k], pairs[2 * k + 1]
        if off == _MISSING and nbytes == _MISSING:
            found.append(f"inner chunk {pos} missing from the shard index")
            continue
        if off + nbytes > len(data) - size:
            found.append(f"inner chunk {pos} points past the end of the shard")
            continue
        covered += nbytes
        if not _crc_ok(data[off : off + nbytes]):
            found.append(f"inner chunk {pos} fails its crc32c")
    if not found and covered != len(data) - size:
        found.append(f"{len(data) - size - covered} shard byte(s) belong to no inner chunk")
    return "; ".join(found[:4]) + (f" (+{len(found) - 4} more)" if len(found) > 4 else "")
