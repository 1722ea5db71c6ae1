"""Storage configurations for the benchmark and how each is written and opened.

Engines:
- ``zarr``: Zarr v3 through tensorstore, written with radiobject's ``ZarrBackend`` when the setting
  is one it offers (sharded, no / byte shuffle); bit shuffle and unsharded arrays are built here with
  the same codec chain (``codec_chain``) and read back through ``ZarrBackend.open_array``.
- ``tiledb``: radiobject's ``TileDBBackend`` (bit shuffle built here with the same schema layout).
  TileDB has no blosc: ``blosc-lz4`` / ``blosc-zstd`` become its shuffle + LZ4 / Zstd filters.
- ``zarr-python-v2`` / ``zarr-python-v3``: zarr-python writing and reading Zarr format 2 / 3
  (numcodecs / zarr.codecs), for the v2 vs v3 comparison.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from radiobject.storage.base import ArraySpec, Codec, default_shards

ENGINES: tuple[str, ...] = ("zarr", "tiledb", "zarr-python-v2", "zarr-python-v3")
SHUFFLES: tuple[str, ...] = ("none", "byte", "bit")
LOSSLESS_CODECS: tuple[str, ...] = ("blosc-lz4", "blosc-zstd", "zstd", "gzip", "none")


@dataclass(frozen=True)
class Config:
    """One storage setting: engine, codec (name, level, shuffle), inner chunk shape, sharding."""

    engine: str
    codec: str
    level: int
    shuffle: str
    chunks: tuple[int, ...]
    sharded: bool

    def label(self) -> str:
        """Short human-readable name, e.g. ``zarr blosc-lz4:5/byte 32x32x32 sharded``."""
        codec = "none" if self.codec == "none" else f"{self.codec}:{self.level}/{self.shuffle}"
        return f"{self.engine} {codec} {chunk_label(self.chunks)}{' sharded' if self.sharded else ''}"


def chunk_label(chunks: tuple[int, ...]) -> str:
    """``(32, 32, 32)`` -> ``32x32x32``."""
    return "x".join(str(c) for c in chunks)


def supported(cfg: Config) -> bool:
    """True when the engine can express this codec / shuffle / sharding combination."""
    if cfg.engine not in ENGINES or cfg.shuffle not in SHUFFLES or cfg.codec not in LOSSLESS_CODECS:
        return False
    if cfg.codec == "none" and cfg.shuffle != "none":
        return False
    if cfg.engine == "tiledb":
        return not cfg.sharded  # one fragment file per write: sharding does not apply
    if cfg.engine == "zarr-python-v2" and cfg.sharded:
        return False
    if cfg.engine in ("zarr", "zarr-python-v3") and cfg.codec in ("zstd", "gzip"):
        return cfg.shuffle == "none"  # no shuffle codec in the Zarr v3 core spec / tensorstore
    if cfg.engine == "zarr-python-v2" and cfg.codec in ("zstd", "gzip"):
        return cfg.shuffle != "bit"  # numcodecs.Shuffle is a byte shuffle
    return True


def clip_chunks(chunks: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunk edges no larger than the volume."""
    return tuple(min(c, s) for c, s in zip(chunks, shape, strict=True))


@contextmanager
def cold_chunk_cache() -> Iterator[None]:
    """Runs tensorstore reads without radiobject's per-process decoded-chunk cache, so that repeated
    timings measure decoding, not cache hits (restores the cache size afterwards)."""
    from radiobject.storage import zarr_backend

    saved = zarr_backend.CHUNK_CACHE_BYTES
    zarr_backend.CHUNK_CACHE_BYTES = 0
    zarr_backend._context.cache_clear()
    try:
        yield
    finally:
        zarr_backend.CHUNK_CACHE_BYTES = saved
        zarr_backend._context.cache_clear()


class Reader:
    """A uniform read interface over a backend handle or a zarr-python array."""

    def __init__(self, obj: Any, native: bool) -> None:
        self._obj, self._native = obj, native

    def read(self, region: tuple[slice, ...], out: np.ndarray) -> np.ndarray:
        """Reads ``region`` into ``out`` (preallocated, C-contiguous)."""
        if self._native:
            return self._obj.read(region, out)
        np.copyto(out, self._obj[region])
        return out


def _bench_codec(cfg: Config) -> Codec:
    return Codec(cfg.codec, cfg.level if cfg.codec != "none" else 0, cfg.shuffle != "none")


def _write_ts_zarr(path: str, data: np.ndarray, cfg: Config, chunks: tuple[int, ...]) -> None:
    import tensorstore as ts

    from radiobject.storage._zarr_meta import DIMENSION_NAMES, codec_chain
    from radiobject.storage.zarr_backend import kvstore_spec

    chain = codec_chain(_bench_codec(cfg), data.dtype.itemsize)
    for c in chain:
        if c["name"] == "blosc" and cfg.shuffle == "bit":
            c["configuration"]["shuffle"] = "bitshuffle"
    if cfg.sharded:
        grid = default_shards(data.shape, chunks)
        codecs = [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": list(chunks),
                    "codecs": chain,
                    "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
                },
            }
        ]
    else:
        grid, codecs = chunks, chain
    meta = {
        "shape": list(data.shape),
        "data_type": data.dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(grid)}},
        "codecs": codecs,
        "fill_value": 0,
        "dimension_names": list(DIMENSION_NAMES[: data.ndim]),
    }
    store = ts.open(
        {"driver": "zarr3", "kvstore": kvstore_spec(path, _storage()), "metadata": meta},
        create=True,
        delete_existing=True,
    ).result()
    store.write(data).result()


def _write_tiledb_bitshuffle(path: str, data: np.ndarray, cfg: Config, chunks: tuple[int, ...]) -> None:
    import tiledb

    from radiobject.storage.tiledb_backend import ATTR, META_KEY

    comp = {
        "blosc-lz4": tiledb.LZ4Filter,
        "blosc-zstd": tiledb.ZstdFilter,
        "zstd": tiledb.ZstdFilter,
        "gzip": tiledb.GzipFilter,
    }[cfg.codec](level=cfg.level)
    dims = [
        tiledb.Dim(name=f"d{i}", domain=(0, n - 1), tile=c, dtype=np.int64)
        for i, (n, c) in enumerate(zip(data.shape, chunks, strict=True))
    ]
    schema = tiledb.ArraySchema(
        domain=tiledb.Domain(*dims),
        sparse=False,
        cell_order="col-major",
        tile_order="col-major",
        attrs=[tiledb.Attr(name=ATTR, dtype=data.dtype, filters=tiledb.FilterList([tiledb.BitShuffleFilter(), comp]))],
    )
    tiledb.Array.create(path, schema)
    with tiledb.open(path, mode="w") as arr:
        arr[tuple(slice(0, n) for n in data.shape)] = np.ascontiguousarray(data)
        arr.meta[META_KEY] = json.dumps({"attrs": {}, "codec": [cfg.codec, cfg.level, True]})


def _zarr_python_codecs(cfg: Config, itemsize: int) -> dict[str, Any]:
    if cfg.codec == "none":
        return {"compressors": None, "filters": None}
    if cfg.engine == "zarr-python-v2":
        import numcodecs

        shuffle = {
            "none": numcodecs.Blosc.NOSHUFFLE,
            "byte": numcodecs.Blosc.SHUFFLE,
            "bit": numcodecs.Blosc.BITSHUFFLE,
        }[cfg.shuffle]
        if cfg.codec.startswith("blosc-"):
            return {
                "compressors": numcodecs.Blosc(cname=cfg.codec[6:], clevel=cfg.level, shuffle=shuffle),
                "filters": None,
            }
        comp = numcodecs.Zstd(level=cfg.level) if cfg.codec == "zstd" else numcodecs.GZip(level=cfg.level)
        filters = [numcodecs.Shuffle(elementsize=itemsize)] if cfg.shuffle == "byte" else None
        return {"compressors": comp, "filters": filters}
    from zarr.codecs import BloscCname, BloscCodec, BloscShuffle, GzipCodec, ZstdCodec

    if cfg.codec.startswith("blosc-"):
        shuffle = BloscShuffle({"none": "noshuffle", "byte": "shuffle", "bit": "bitshuffle"}[cfg.shuffle])
        return {
            "compressors": BloscCodec(
                cname=BloscCname(cfg.codec[6:]), clevel=cfg.level, shuffle=shuffle, typesize=itemsize
            )
        }
    return {"compressors": ZstdCodec(level=cfg.level) if cfg.codec == "zstd" else GzipCodec(level=cfg.level)}


def _storage() -> Any:
    from radiobject.storage.options import StorageOptions

    return StorageOptions()


def write(cfg: Config, path: str, data: np.ndarray) -> None:
    """Writes ``data`` at ``path`` (replacing anything there) with the setting ``cfg``."""
    if not supported(cfg):
        raise ValueError(f"unsupported benchmark configuration: {cfg.label()}")
    shutil.rmtree(path, ignore_errors=True)
    chunks = clip_chunks(cfg.chunks, data.shape)
    region = tuple(slice(0, n) for n in data.shape)
    if cfg.engine == "zarr":
        if cfg.sharded and cfg.shuffle != "bit":
            from radiobject.storage.zarr_backend import ZarrBackend

            spec = ArraySpec(data.shape, data.dtype.name, chunks, _bench_codec(cfg))
            ZarrBackend().create_array(path, spec, {}).write(region, data)
        else:
            _write_ts_zarr(path, data, cfg, chunks)
    elif cfg.engine == "tiledb":
        if cfg.shuffle == "bit":
            _write_tiledb_bitshuffle(path, data, cfg, chunks)
        else:
            from radiobject.storage.tiledb_backend import TileDBBackend

            spec = ArraySpec(data.shape, data.dtype.name, chunks, _bench_codec(cfg))
            TileDBBackend().create_array(path, spec, {}).write(region, data)
    else:
        import zarr

        fmt: Literal[2, 3] = 2 if cfg.engine == "zarr-python-v2" else 3
        kwargs = _zarr_python_codecs(cfg, data.dtype.itemsize)
        if cfg.sharded:
            kwargs["shards"] = default_shards(data.shape, chunks)
        arr = zarr.create_array(
            store=path,
            shape=data.shape,
            chunks=chunks,
            dtype=data.dtype,
            zarr_format=fmt,
            fill_value=0,
            overwrite=True,
            **kwargs,
        )
        arr[...] = data


def open_reader(cfg: Config, path: str) -> Reader:
    """Opens the array at ``path`` for reading (a fresh handle)."""
    if cfg.engine == "zarr":
        from radiobject.storage.zarr_backend import ZarrBackend

        return Reader(ZarrBackend().open_array(path), True)
    if cfg.engine == "tiledb":
        from radiobject.storage.tiledb_backend import TileDBBackend

        return Reader(TileDBBackend().open_array(path), True)
    import zarr

    return Reader(zarr.open_array(path, mode="r"), False)


def disk_usage(path: str) -> tuple[int, int]:
    """(bytes, number of files) under ``path``: the object count a store would hold on S3."""
    total = count = 0
    for root, _, names in os.walk(path):
        for name in names:
            total += os.path.getsize(os.path.join(root, name))
            count += 1
    return total, count


def chunks_touched(region: tuple[slice, ...], chunks: tuple[int, ...]) -> int:
    """Number of inner chunks a region overlaps."""
    return math.prod((r.stop - 1) // c - r.start // c + 1 for r, c in zip(region, chunks, strict=True))
