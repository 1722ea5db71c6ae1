"""The Zarr v3 array layouts the own read path (``radiobject.storage._zarr_plain``) reads exactly:
``sharding_indexed`` with its index at the end (``bytes`` + ``crc32c``), inner chunks ``bytes``
[+ ``blosc``] [+ ``crc32c``], little-endian, fill value 0; anything else stays with tensorstore."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PlainLayout", "plain_layout"]


@dataclass(frozen=True)
class PlainLayout:
    """What this path needs of a Zarr v3 array's metadata (:func:`plain_layout`)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    shard: tuple[int, ...]
    chunk: tuple[int, ...]
    compressor: str  # "blosc" | "none"
    crc: bool
    separator: str

    @property
    def per_shard(self) -> tuple[int, ...]:
        """Inner chunks per shard along each axis."""
        return tuple(s // c for s, c in zip(self.shard, self.chunk, strict=True))


def _little(cfg: Mapping[str, Any] | None, itemsize: int) -> bool:
    return itemsize == 1 or (cfg or {}).get("endian", "little") == "little"


def plain_layout(meta: Mapping[str, Any]) -> PlainLayout | None:
    """The layout of stored Zarr v3 metadata when this path reads it exactly, else ``None``."""
    try:
        if meta.get("zarr_format") != 3 or meta["chunk_grid"]["name"] != "regular":
            return None
        enc = meta.get("chunk_key_encoding", {"name": "default"})
        sep = enc.get("configuration", {}).get("separator", "/")
        if enc.get("name") != "default" or sep not in ("/", "."):
            return None
        (outer,) = meta["codecs"]
        cfg = outer["configuration"]
        if outer["name"] != "sharding_indexed" or cfg.get("index_location", "end") != "end":
            return None
        dtype = np.dtype(str(meta["data_type"]))
        if dtype.kind not in "biuf" or meta.get("fill_value", 0) not in (0, False):
            return None
        index = cfg.get("index_codecs", [])
        if [c["name"] for c in index] != ["bytes", "crc32c"] or not _little(index[0].get("configuration"), 8):
            return None
        names = [c["name"] for c in cfg["codecs"]]
        crc = names[-1:] == ["crc32c"]
        body = names[:-1] if crc else names
        if not body or body[0] != "bytes" or not _little(cfg["codecs"][0].get("configuration"), dtype.itemsize):
            return None
        comp = {(): "none", ("blosc",): "blosc"}.get(tuple(body[1:]))
        shape = tuple(int(s) for s in meta["shape"])
        shard = tuple(int(s) for s in meta["chunk_grid"]["configuration"]["chunk_shape"])
        chunk = tuple(int(c) for c in cfg["chunk_shape"])
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if comp is None or not len(shape) == len(shard) == len(chunk) or min((*shape, *shard, *chunk), default=0) < 1:
        return None  # tensorstore decides (and names what is wrong)
    if any(s % c for s, c in zip(shard, chunk, strict=True)):
        return None
    return PlainLayout(shape, dtype.newbyteorder("<"), shard, chunk, comp, crc, sep)
