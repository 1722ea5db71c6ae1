"""Creates the OME-Zarr image layout (Zarr v3 sharded for NGFF 0.5, Zarr v2 for 0.4) at an
:class:`~radiobject.convert.output.OutputTarget` (local or S3) and writes the group's top-level
metadata last, once every level is complete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from radiobject.convert.options import ConvertOptions, v2_compressor, v3_compressors
from radiobject.convert.output import OutputTarget
from radiobject.formats.ngff import (
    image_attributes,
    multiscales_metadata,
    omero_metadata,
    validate_image_attributes,
)

__all__ = ["ImageLayout", "LevelLayout", "create_image", "finalize_image", "open_level"]


@dataclass(frozen=True)
class LevelLayout:
    """One pyramid level: array shape, chunk and shard (== chunk for v2) shapes, in ``axes`` order."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    shards: tuple[int, ...]


@dataclass(frozen=True)
class ImageLayout:
    """The whole output image: axes, dtype and the levels, largest first."""

    target: OutputTarget
    axes: str
    dtype: np.dtype
    levels: tuple[LevelLayout, ...]
    zarr_format: int

    @property
    def path(self) -> str:
        """Where the image is being written (its final address once published)."""
        return self.target.work

    def block_edge(self, level: int) -> int:
        """y/x edge of a work block at ``level`` (one shard)."""
        return self.levels[level].shards[self.axes.index("y")]


def plan_levels(
    axes: str,
    shape: tuple[int, ...],
    n_levels: int,
    chunk: int,
    block: int,
    downsample_z: bool,
    fuse_level1: bool = False,
) -> tuple[LevelLayout, ...]:
    """Shapes halve in y / x (and z when asked), floor-sized; chunks are 1 along t / c / z.

    Shards are ``block`` pixels in y / x (capped to the level, whole chunks); with
    ``fuse_level1`` level 1 gets ``block / 2`` shards so that each level-0 block maps to exactly
    one level-1 shard and can be written from memory.
    """
    out = []
    cur = tuple(shape)
    for level in range(n_levels):
        edge = block // 2 if (level == 1 and fuse_level1) else block
        chunks = tuple(min(chunk, n) if a in "yx" else 1 for a, n in zip(axes, cur, strict=True))
        shards = tuple(
            min(-(-min(edge, n) // c) * c, -(-n // c) * c) if a in "yx" else 1
            for a, n, c in zip(axes, cur, chunks, strict=True)
        )
        out.append(LevelLayout(cur, chunks, shards))
        cur = tuple(
            max(n // 2, 1) if (a in "yx" or (a == "z" and downsample_z)) else n for a, n in zip(axes, cur, strict=True)
        )
    return tuple(out)


def create_image(
    target: OutputTarget, axes: str, dtype: np.dtype, levels: tuple[LevelLayout, ...], options: ConvertOptions
) -> ImageLayout:
    """Creates one empty array per level (``"0"``, ``"1"`` ...) at ``target.work``, without the
    group's top-level metadata (written by :func:`finalize_image`, last).

    Raises:
        StoreExistsError: a finished image exists at ``target.final`` and ``options.overwrite``
            is false.
    """
    # by its type code: numpy has two int64 types on Linux (long / longlong, tifffile may give the
    # latter) and zarr knows only one of them
    dtype = np.dtype(np.dtype(dtype).str)
    forget(target.work)  # never reuse handles of an earlier image at this path
    target.prepare(options.overwrite)
    v3 = options.ngff_version == "0.5"
    store = target.store()
    for i, lv in enumerate(levels):
        kwargs: dict[str, Any] = {
            "name": str(i),
            "shape": lv.shape,
            "dtype": dtype,
            "chunks": lv.chunks,
            "fill_value": 0,
            "zarr_format": 3 if v3 else 2,
        }
        if v3:
            kwargs.update(
                shards=lv.shards if lv.shards != lv.chunks else None,
                compressors=v3_compressors(options.compression, options.compression_level),
                dimension_names=list(axes),
            )
        else:
            comp = v2_compressor(options.compression, options.compression_level)
            kwargs.update(compressors=comp, chunk_key_encoding={"name": "v2", "separator": "/"})
        zarr.create_array(store, **kwargs)
    target.drop_group_documents(target.work)  # zarr writes an empty parent group: not yet
    return ImageLayout(target, axes, np.dtype(dtype), levels, 3 if v3 else 2)


_CACHE: dict[tuple[str, int, int], zarr.Array] = {}


def open_level(target: OutputTarget, level: int) -> zarr.Array:
    """The array of one level, opened once per process (for workers)."""
    import os

    key = (target.work, level, os.getpid())
    arr = _CACHE.get(key)
    if arr is None:
        arr = zarr.open_array(target.store(), path=str(level), mode="r+")
        _CACHE[key] = arr
    return arr


def forget(path: str) -> None:
    """Drops cached handles of an image (after it is complete)."""
    for k in [k for k in _CACHE if k[0] == path]:
        del _CACHE[k]


def finalize_image(
    layout: ImageLayout,
    *,
    physical_size: dict[str, float],
    units: dict[str, str | None],
    channel_names: list[str],
    channel_colors: list[str],
    windows: list[tuple[float, float, float, float]] | None,
    affine: np.ndarray,
    options: ConvertOptions,
    name: str,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Writes (and validates) the NGFF group attributes; returns them."""
    axes = layout.axes
    base = [float(physical_size.get(a, 1.0)) if a != "c" else 1.0 for a in axes]
    scales, translations = [], []
    for lv in layout.levels:
        factors = [layout.levels[0].shape[i] / lv.shape[i] if a in "zyx" else 1.0 for i, a in enumerate(axes)]
        factors = [float(2 ** round(np.log2(f))) if f > 0 else 1.0 for f in factors]
        scales.append([b * f for b, f in zip(base, factors, strict=True)])
        translations.append([b * (f - 1) / 2 for b, f in zip(base, factors, strict=True)])
    ms = multiscales_metadata(
        axes,
        scales,
        units=units,
        level_translations=translations,
        name=name,
        version=options.ngff_version,
        downscale_type="mode" if options.labels else "mean",
    )
    omero = None
    if not options.labels and "c" in axes:
        omero = omero_metadata(channel_names, channel_colors, windows, version=options.ngff_version, name=name)
    elif not options.labels:
        omero = omero_metadata(
            [channel_names[0] if channel_names else name], ["FFFFFF"], windows, version=options.ngff_version, name=name
        )
    attrs = image_attributes(ms, omero=omero, affine=affine, extra=extra, version=options.ngff_version)
    validate_image_attributes(attrs, options.ngff_version, [lv.shape for lv in layout.levels])
    forget(layout.path)
    zarr.create_group(layout.target.store(), attributes=attrs, zarr_format=3 if layout.zarr_format == 3 else 2)
    return attrs
