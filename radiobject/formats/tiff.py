"""TIFF / OME-TIFF / SVS readers (tifffile), lazy through tifffile's Zarr 3 store interface.

Every image is described in the NGFF axis vocabulary ``t, c, z, y, x``:

* OME-TIFF: axes, sizes, physical sizes and channel names come from the OME-XML
  (tifffile parses ``DimensionOrder`` and the ``TiffData`` blocks into the series axes).
* samples per pixel (RGB, interleaved or planar ``S``) become channels ``c``;
* a plain multi-page TIFF (``I`` / ``Q`` page axis) becomes ``z``;
* pyramids (SubIFDs, SVS, OME pyramids, NDPI ...) expose their levels, largest first.

Pixels are never read at open time: :class:`LazyTiffArray` reads only the tiles / strips that a
slice touches, and can be pickled (it re-opens the file by path in the new process).
"""

from __future__ import annotations

import os
import re
import struct
import threading
from pathlib import Path
from typing import Any, cast

import numpy as np
import tifffile
import zarr

from radiobject.errors import TiffError
from radiobject.formats.image import ImageData
from radiobject.formats.inputs import regular_file_size
from radiobject.formats.tiff_meta import (
    NGFF_ORDER,
    TiffInfo,
    _channels,
    _check_pages,
    _map_axes,
    _physical,
    affine_from_info,
    level_downsampling,  # noqa: F401 - re-exported: public name of this module before the split
)

__all__ = [
    "LazyTiffArray",
    "TiffInfo",
    "affine_from_info",
    "image_series",
    "open_tiff_array",
    "read_tiff",
    "tiff_info",
]


def _open_tifffile(path: str | os.PathLike[str]) -> tifffile.TiffFile:
    p = Path(path)
    if not p.exists():
        raise TiffError(p, "file not found")
    regular_file_size(p, TiffError)  # a FIFO, device or socket is refused before it is opened
    try:
        return tifffile.TiffFile(p)
    except tifffile.TiffFileError as exc:
        raise TiffError(p, f"not a TIFF file or truncated header ({exc})") from exc
    except (OSError, ValueError, struct.error) as exc:
        raise TiffError(p, f"cannot parse TIFF structure ({exc})") from exc


#: Names of a whole-slide file's associated images (tifffile's SVS / NDPI / Philips / QPI series,
#: OME / Bio-Formats images): a series so named beside series 0 is not an image of its own.
_ASSOCIATED = re.compile(r"^(thumbnail|label|macro|map|overview)( image)?$", re.IGNORECASE)


def image_series(tif: tifffile.TiffFile) -> list[int]:
    """The indices of the image series of an open file: series 0 and every other series that is
    not an associated image (a slide's thumbnail, label, macro, map or overview). The pyramid
    levels of a series belong to that series (tifffile's ``levels``), never counted here."""
    return [i for i, s in enumerate(tif.series) if i == 0 or not _ASSOCIATED.match((s.name or "").strip())]


def _choose_series(tif: tifffile.TiffFile, series: int | None, path: str) -> int:
    """``series`` when given; else the file's one image series, or a ``TiffError`` naming each of
    them (index, name, shape, axes): a file of several images is never read as its first silently."""
    if series is not None:
        return int(series)
    found = image_series(tif)
    if len(found) <= 1:
        return 0
    listed = "; ".join(
        f"{i}: {tif.series[i].name or 'unnamed'!r} {tuple(tif.series[i].shape)} {tif.series[i].axes}" for i in found
    )
    raise TiffError(
        path,
        f"holds {len(found)} image series ({listed}); choose one: series=N (read_tiff / tiff_info), "
        "radiobject ingest --tiff-series N, convert-tiff --series N",
    )


def tiff_info(path: str | os.PathLike[str], series: int | None = None) -> TiffInfo:
    """Describes one series of a TIFF file from its tags and OME-XML, without reading pixels.

    ``series=None``: the file's one image series (see :func:`image_series`; a file of several is a
    ``TiffError`` listing them); an index picks one.

    Raises:
        TiffError: not a TIFF, truncated, unsupported compression or axes, no such series, several
            image series and none chosen.
    """
    with _open_tifffile(path) as tif:
        return _info(tif, series, str(path))


def _info(tif: tifffile.TiffFile, series: int | None, path: str) -> TiffInfo:
    if not tif.series:
        raise TiffError(path, "no image series found")
    series = _choose_series(tif, series, path)
    if not 0 <= series < len(tif.series):
        raise TiffError(path, f"series {series} out of range (file has {len(tif.series)})")
    s = tif.series[series]
    _check_pages(tif, s, path)
    mapping = _map_axes(s.axes, s.shape, path)
    axes = "".join(a for a in NGFF_ORDER if a in mapping)
    levels = []
    for lvl in s.levels:
        m = dict(zip(mapping, lvl.shape, strict=True))
        levels.append(tuple(int(m[a]) for a in axes))
    keyframe = s.levels[0].keyframe
    size, units, names, colors = _physical(tif, series, axes)
    cn, cc = _channels(axes, levels[0], s.axes, int(keyframe.photometric), names, colors)
    kind = next(
        (
            k
            for k in ("ome", "svs", "imagej", "ndpi", "scn", "qpi", "philips", "lsm", "stk")
            if getattr(tif, f"is_{k}", False)
        ),
        "generic",
    )
    return TiffInfo(
        path=path,
        kind=kind,
        series=series,
        n_series=len(tif.series),
        axes=axes,
        shape=levels[0],
        levels=tuple(levels),
        dtype=np.dtype(s.dtype),
        physical_size=size,
        units=units,
        channel_names=cn,
        channel_colors=cc,
        compression=tifffile.COMPRESSION(keyframe.compression).name,
        tile=(int(keyframe.tilelength), int(keyframe.tilewidth)) if keyframe.is_tiled else None,
        source_axes=s.axes,
    )


class LazyTiffArray:
    """A lazy, picklable view of one pyramid level of one TIFF series, in chosen NGFF axis order.

    ``axes`` is a permutation of the series' NGFF axes, optionally with extra length-1 axes
    (e.g. ``"xyzc"`` for a ``"cyx"`` image). Basic slicing (ints / slices with step) reads only
    the tiles or strips it touches through tifffile's Zarr 3 store.
    """

    def __init__(self, path: str | os.PathLike[str], series: int = 0, level: int = 0, axes: str | None = None) -> None:
        self.path, self.series, self.level = str(path), int(series), int(level)
        self._lock = threading.Lock()
        self._tif: tifffile.TiffFile | None = None
        self._zarr: Any = None
        self._pid = -1
        tif = self._open()
        s = tif.series[self.series]
        if not 0 <= self.level < len(s.levels):
            raise TiffError(self.path, f"level {self.level} out of range (series has {len(s.levels)})")
        lvl = s.levels[self.level]
        self.src_axes: str = s.axes
        self.src_shape: tuple[int, ...] = tuple(int(n) for n in lvl.shape)
        self._map = _map_axes(s.axes, self.src_shape, self.path)
        self.ngff_axes = "".join(a for a in NGFF_ORDER if a in self._map)
        self.axes = axes or self.ngff_axes
        if (
            set(self.axes) - set(NGFF_ORDER)
            or len(set(self.axes)) != len(self.axes)
            or not set(self.ngff_axes) <= set(self.axes)
        ):
            raise ValueError(f"axes {self.axes!r} must contain {self.ngff_axes!r} and only 'tczyx'")
        sizes = {a: n for a, n in zip(self._map, self.src_shape, strict=True) if a}
        self.shape: tuple[int, ...] = tuple(sizes.get(a, 1) for a in self.axes)
        self.dtype: np.dtype = np.dtype(lvl.dtype)

    # -- file handling (re-opened per process) --------------------------------------------------
    def _open(self) -> tifffile.TiffFile:
        if self._tif is None or self._pid != os.getpid():
            with self._lock:
                if self._tif is None or self._pid != os.getpid():
                    self._tif = _open_tifffile(self.path)
                    self._zarr = None
                    self._pid = os.getpid()
        return self._tif

    @property
    def zarr_array(self) -> zarr.Array:
        """The underlying read-only Zarr array over the TIFF, in tifffile's axis order."""
        tif = self._open()
        if self._zarr is None:
            with self._lock:
                if self._zarr is None:
                    store = tif.series[self.series].aszarr(level=self.level)
                    self._zarr = zarr.open_array(store, mode="r")
        return self._zarr

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_tif=None, _zarr=None, _pid=-1, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Closes the file handle (it re-opens on the next read)."""
        if self._tif is not None:
            self._tif.close()
        self._tif, self._zarr = None, None

    # -- array protocol --------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def chunks(self) -> tuple[int, ...]:
        """The TIFF tile / strip shape in ``axes`` order (what one read decodes)."""
        src = dict(zip(self._map, self.zarr_array.chunks, strict=True))
        return tuple(int(src.get(a) or 1) for a in self.axes)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out.astype(dtype) if dtype is not None else out

    def __repr__(self) -> str:
        return (
            f"LazyTiffArray({self.path!r}, series={self.series}, level={self.level}, "
            f"axes={self.axes!r}, shape={self.shape}, dtype={self.dtype})"
        )

    def _normalize(self, key: Any) -> list[int | slice]:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:i] + fill + key[i + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim:
            raise IndexError(f"too many indices for array of {self.ndim} dimensions")
        out: list[int | slice] = []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, (int, np.integer)):
                k = int(k) + n if k < 0 else int(k)
                if not 0 <= k < n:
                    raise IndexError(f"index {k} out of range for axis of size {n}")
                out.append(k)
            elif isinstance(k, slice):
                out.append(slice(*k.indices(n)))
            else:
                raise TypeError(f"only ints, slices and Ellipsis are supported, got {type(k).__name__}")
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        keys = dict(zip(self.axes, self._normalize(key), strict=True))
        src_key = tuple(keys[a] if a else 0 for a in self._map)
        try:
            data = np.asarray(self.zarr_array[src_key])
        except TiffError:
            raise
        except Exception as exc:
            raise TiffError(self.path, f"cannot decode pixel data ({type(exc).__name__}: {exc})") from exc
        kept = [a for a, k in zip(self._map, src_key, strict=True) if a and isinstance(k, slice)]
        # transpose the kept source axes into output order, then insert the missing length-1 axes
        out_axes = [a for a in self.axes if isinstance(keys[a], slice)]
        order = [a for a in out_axes if a in kept]
        data = np.transpose(data, [kept.index(a) for a in order])
        # every axis in out_axes has a slice key (cast: mypy cannot follow the isinstance filter above)
        shape = [
            data.shape[order.index(a)] if a in kept else len(range(*cast(slice, keys[a]).indices(1))) for a in out_axes
        ]
        return data.reshape(shape)


def open_tiff_array(
    path: str | os.PathLike[str], series: int | None = None, level: int = 0, axes: str | None = None
) -> LazyTiffArray:
    """A lazy array over one level of one series, in NGFF order (``"tczyx"`` subset) by default.
    ``series=None``: the file's one image series (as :func:`tiff_info`).

    Raises:
        TiffError: not a TIFF, truncated, unsupported compression, bad series / level, several
            image series and none chosen.
    """
    info = tiff_info(path, series)  # validates compression and truncation before any read
    if not 0 <= level < len(info.levels):
        raise TiffError(path, f"level {level} out of range (series has {len(info.levels)})")
    return LazyTiffArray(path, info.series, level, axes)


def read_tiff(path: str | os.PathLike[str], series: int | None = None, level: int = 0) -> ImageData:
    """Reads one pyramid level of one TIFF series as a lazy :class:`ImageData`.

    ``series=None``: the file's one image series; a file holding several (an OME-TIFF of several
    images, a multi-series TIFF) is a ``TiffError`` naming their count and shapes, never its first
    series silently. A slide's associated images (thumbnail, label, macro) are not image series.

    The array is a :class:`LazyTiffArray` in ``x, y, z[, c][, t]`` order (``z`` is always present,
    length 1 for a 2D image), matching the medical-image convention of :class:`ImageData`;
    the affine maps (x, y, z) voxel indices to millimetres (microns / 1000). Metadata keeps the
    native physical sizes and units, the NGFF axes, channel names / colors and the pyramid shapes.

    Raises:
        TiffError: not a TIFF, truncated, unsupported compression, bad series / level, several
            image series and none chosen.
    """
    info = tiff_info(path, series)
    if not 0 <= level < len(info.levels):
        raise TiffError(path, f"level {level} out of range (series has {len(info.levels)})")
    axes = "xyz" + ("c" if "c" in info.axes else "") + ("t" if "t" in info.axes else "")
    array = LazyTiffArray(path, info.series, level, axes)
    metadata: dict[str, Any] = {
        "format": "tiff",
        "tiff_kind": info.kind,
        "series": info.series,
        "level": level,
        "n_series": info.n_series,
        "axes": axes,
        "ngff_axes": info.axes,
        "source_axes": info.source_axes,
        "levels": [list(shape) for shape in info.levels],
        "physical_size": dict(info.physical_size),
        "units": dict(info.units),
        "channel_names": list(info.channel_names),
        "channel_colors": list(info.channel_colors),
        "compression": info.compression,
    }
    if info.tile is not None:
        metadata["tile"] = list(info.tile)
    return ImageData(array=array, affine=affine_from_info(info, level), metadata=metadata, source=str(path))
