"""Zarr v3 metadata <-> ``ArraySpec``: the codec chain written for a ``Codec`` (``crc32c`` last) and
the spec read back from stored metadata (the write path mirrors the read path)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from radiobject.storage.base import ArraySpec, Codec

__all__ = ["DIMENSION_NAMES", "codec_chain", "codec_from_metadata", "spec_from_metadata"]

#: Axis names written into every array's metadata.
DIMENSION_NAMES = ("x", "y", "z", "t", "c")


def codec_chain(codec: Codec, itemsize: int, checksum: bool = True) -> list[dict[str, Any]]:
    """The inner-chunk codecs of ``codec``, ending with ``crc32c`` unless ``checksum=False``."""
    chain: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if codec.name.startswith("blosc-"):
        chain.append(
            {
                "name": "blosc",
                "configuration": {
                    "cname": codec.name.split("-", 1)[1],
                    "clevel": codec.level,
                    "shuffle": "shuffle" if codec.shuffle else "noshuffle",
                    "typesize": itemsize,
                    "blocksize": 0,
                },
            }
        )
    elif codec.name == "zstd":
        chain.append({"name": "zstd", "configuration": {"level": codec.level}})
    elif codec.name == "gzip":
        chain.append({"name": "gzip", "configuration": {"level": codec.level}})
    if checksum:
        chain.append({"name": "crc32c"})
    return chain


def codec_from_metadata(meta: Mapping[str, Any]) -> Codec:
    """The ``Codec`` of stored Zarr v3 array metadata (the inner chunks' compressor, if sharded)."""
    inner = meta["codecs"][0].get("configuration", {}).get("codecs", meta["codecs"])
    for c in inner:
        cfg = c.get("configuration", {})
        if c["name"] == "blosc":
            return Codec(f"blosc-{cfg['cname']}", int(cfg["clevel"]), cfg.get("shuffle") != "noshuffle")
        if c["name"] in ("zstd", "gzip"):
            return Codec(c["name"], int(cfg.get("level", 3)))
    return Codec("none", 0)


def spec_from_metadata(meta: Mapping[str, Any]) -> ArraySpec:
    """The ``ArraySpec`` (shape, dtype, inner chunks, codec, shards) of stored Zarr v3 metadata."""
    sharded = meta["codecs"][0]["name"] == "sharding_indexed"
    grid = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    chunks = tuple(meta["codecs"][0]["configuration"]["chunk_shape"]) if sharded else grid
    dtype = np.dtype(meta["data_type"]).name
    return ArraySpec(tuple(meta["shape"]), dtype, chunks, codec_from_metadata(meta), grid if sharded else None)
