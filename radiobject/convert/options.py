"""Settings of the TIFF -> OME-Zarr conversion, chunk-size rules and codec construction."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

COMPRESSIONS = ("blosc", "zstd", "lz4", "none")
#: target bytes of one chunk column (all channels of one y/x chunk) when ``chunk_size`` is auto.
AUTO_CHUNK_BYTES = 32 * 2**20
MIN_CHUNK, MAX_CHUNK = 256, 2048


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert (frozen and picklable: it travels into worker processes).

    Attributes:
        workers: parallel workers (``None`` = CPU count).
        executor: ``"thread"`` (default; the codecs release the GIL) or ``"process"``.
        chunk_size: y/x chunk edge in pixels; ``None`` = auto (about 32 MB for all channels).
        compression / compression_level: ``blosc`` (Blosc-LZ4 + byte shuffle), ``zstd``,
            ``lz4`` (Blosc-LZ4, no shuffle) or ``none``; level 1 (fast) .. 9 (small).
        pyramid_levels: total number of levels including full resolution; ``None`` = halve until
            the largest y/x edge is <= ``min_size``.
        min_size: stop size for the automatic pyramid (pixels).
        ngff_version: ``"0.5"`` (Zarr v3, sharded) or ``"0.4"`` (Zarr v2, for QuPath / Fiji).
        labels: the input is a label image: mode (not mean) downsampling, no ``omero`` block.
        downsample_z: also halve ``z`` at each level (volumes).
        block_bytes: upper bound on the bytes one worker holds for one output block (a shard
            for 0.5); peak memory is about ``workers * 3 * block_bytes`` plus the decoder's tiles.
        series: which TIFF series to convert; ``None`` (default) = each file's one image series,
            and a file of several image series is refused (a ``TiffError`` listing them) unless
            an index is given.
        overwrite: replace an existing output; otherwise an existing output is an error.
        skip_existing: leave an existing complete output as it is and report it as present (to
            resume an interrupted run); ignored with ``overwrite``.
    """

    workers: int | None = None
    executor: str = "thread"
    chunk_size: int | None = None
    compression: str = "blosc"
    compression_level: int = 5
    pyramid_levels: int | None = None
    min_size: int = 512
    ngff_version: str = "0.5"
    labels: bool = False
    downsample_z: bool = False
    block_bytes: int = 64 * 2**20
    series: int | None = None
    overwrite: bool = False
    skip_existing: bool = False

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if not 1 <= int(self.compression_level) <= 9:
            raise ValueError(f"compression_level must be 1-9, got {self.compression_level}")
        if self.ngff_version not in ("0.5", "0.4"):
            raise ValueError(f"ngff_version must be '0.5' or '0.4', got {self.ngff_version!r}")
        if self.executor not in ("thread", "process"):
            raise ValueError(f"executor must be 'thread' or 'process', got {self.executor!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.chunk_size is not None and not 16 <= self.chunk_size <= 65536:
            raise ValueError(f"chunk_size must be 16-65536 pixels, got {self.chunk_size}")
        if self.pyramid_levels is not None and self.pyramid_levels < 1:
            raise ValueError(f"pyramid_levels must be >= 1, got {self.pyramid_levels}")
        if self.series is not None and self.series < 0:
            raise ValueError(f"series must be >= 0, got {self.series}")
        if self.min_size < 1 or self.block_bytes < 2**16:
            raise ValueError("min_size must be >= 1 and block_bytes >= 64 KiB")

    @property
    def n_workers(self) -> int:
        """The resolved worker count."""
        return int(self.workers or os.cpu_count() or 1)


def auto_chunk_size(
    height: int, width: int, n_channels: int, itemsize: int, target_bytes: int = AUTO_CHUNK_BYTES
) -> int:
    """The y/x chunk edge: the largest power of two in [256, 2048] whose chunk column over all
    channels stays within ``target_bytes`` (about 32 MB) and that is at most half the
    longest edge (so that small images still get several chunks)."""
    n = MAX_CHUNK
    longest = max(height, width)
    while n > MIN_CHUNK and (n * n * n_channels * itemsize > target_bytes or n > longest / 2):
        n //= 2
    return n


def block_size(chunk: int, n_channels_per_block: int, itemsize: int, block_bytes: int) -> int:
    """Edge of one work block / shard: ``chunk`` times the largest power of two whose square of
    all channels in one block fits ``block_bytes`` (at least one chunk). A power of two keeps
    half a block chunk-aligned, so level 1 can be written from the level-0 block in memory."""
    k = 1
    while (2 * k * chunk) ** 2 * n_channels_per_block * itemsize <= block_bytes:
        k *= 2
    return k * chunk


def level_count(shape_yx: tuple[int, int], min_size: int, requested: int | None) -> int:
    """Number of pyramid levels: ``requested`` (capped so no level is empty) or, by default,
    halve until the longest y/x edge is <= ``min_size``."""
    h, w = shape_yx
    cap = 1
    while min(h >> cap, w >> cap) >= 1 and cap < 32:
        cap += 1
    if requested is not None:
        return max(1, min(requested, cap))
    n = 1
    while max(h >> (n - 1), w >> (n - 1)) > min_size and n < cap:
        n += 1
    return n


def v3_compressors(compression: str, level: int) -> Any:
    """Zarr v3 ``compressors`` for the given setting (``None`` for no compression)."""
    from zarr.codecs import BloscCodec, ZstdCodec

    if compression == "none":
        return None
    if compression == "zstd":
        return ZstdCodec(level=level)
    shuffle: Literal["shuffle", "noshuffle"] = "shuffle" if compression == "blosc" else "noshuffle"
    return BloscCodec(cname="lz4", clevel=level, shuffle=shuffle)


def v2_compressor(compression: str, level: int) -> Any:
    """Zarr v2 (numcodecs) compressor for the given setting (``None`` for no compression)."""
    import numcodecs

    if compression == "none":
        return None
    if compression == "zstd":
        return numcodecs.Zstd(level=level)
    shuffle = numcodecs.Blosc.SHUFFLE if compression == "blosc" else numcodecs.Blosc.NOSHUFFLE
    return numcodecs.Blosc(cname="lz4", clevel=level, shuffle=shuffle)
