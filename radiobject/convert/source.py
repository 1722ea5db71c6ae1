"""One region's input: one or more TIFFs stacked along channels, read lazily block by block."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radiobject.errors import TiffError
from radiobject.formats.tiff import LazyTiffArray, TiffInfo, open_tiff_array, tiff_info

__all__ = ["Region", "RegionSource", "find_regions"]

TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".btf", ".tf8", ".ndpi", ".scn", ".qptiff")
_PALETTE = ("0000FF", "00FF00", "FF0000", "FFFFFF", "FFFF00", "FF00FF", "00FFFF", "FF8000")
REGION_PATTERN = re.compile(r"(?<![A-Za-z0-9])(R\d{3,})(?![0-9])")


@dataclass(frozen=True)
class Region:
    """A named group of input files converted into one OME-Zarr image (files = channels).

    Attributes:
        name: the full sample key, e.g. ``sampleA_R000`` (also the output name).
        inputs: the files, in name order.
        token: the region token alone (``R000``), ``""`` for a file without one.
    """

    name: str
    inputs: tuple[Path, ...]
    token: str = ""


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", *TIFF_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def find_regions(inputs: Sequence[str | os.PathLike[str]], regions: Sequence[str] | None = None) -> list[Region]:
    """Expands folders to their TIFF files and groups files into regions.

    A file whose name contains a CellDIVE-style region token (``R000``, ``R001`` ...) joins the
    region named by its full sample key, the name up to and including the token
    (``sampleA_R000_DAPI.tif`` -> ``sampleA_R000``): files of one sample and region are stacked as
    channels, in name order, while ``sampleA_R000_*`` and ``sampleB_R000_*`` stay two images. Any
    other file is a region of its own, named after the file. ``regions`` keeps only the regions
    named by full key or by token (``R000`` selects every sample's R000); a name matching nothing
    is an error naming what exists.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(TIFF_SUFFIXES)))
        else:
            files.append(p)
    groups: dict[str, list[Path]] = {}
    tokens: dict[str, str] = {}
    for f in files:
        m = REGION_PATTERN.search(f.name)
        key = f.name[: m.end()] if m else _stem(f)
        tokens[key] = m.group(1) if m else ""
        groups.setdefault(key, []).append(f)
    out = [Region(k, tuple(sorted(v)), tokens[k]) for k, v in groups.items()]
    if regions:
        wanted = list(dict.fromkeys(regions))
        missing = [w for w in wanted if not any(w in (r.name, r.token) for r in out)]
        if missing:
            raise ValueError(f"regions not found among the inputs: {missing} (found: {sorted(groups)})")
        out = [r for r in out if r.name in wanted or r.token in wanted]
    return out


@dataclass
class RegionSource:
    """The lazy input of one region in NGFF axis order (a ``"tczyx"`` subsequence).

    Files are stacked along ``c``; all must share dtype and t / z / y / x sizes.
    Picklable (each :class:`LazyTiffArray` re-opens its file in the new process).
    """

    name: str
    parts: list[LazyTiffArray]
    infos: list[TiffInfo]
    axes: str = ""
    shape: tuple[int, ...] = ()
    dtype: np.dtype = field(default_factory=lambda: np.dtype("uint8"))
    channel_names: list[str] = field(default_factory=list)
    channel_colors: list[str] = field(default_factory=list)
    c_offsets: list[int] = field(default_factory=list)

    @classmethod
    def open(cls, region: Region, series: int | None = None) -> RegionSource:
        """Opens every file of ``region`` (tags only) and checks that they stack.

        ``series``: the TIFF series to read of every file; ``None`` = each file's one image series
        (a file of several image series is refused, see ``formats.tiff.tiff_info``).

        Raises:
            TiffError: a file cannot be read, holds several image series and none is chosen, or
                the files do not match.
        """
        infos = [tiff_info(p, series) for p in region.inputs]
        first = infos[0]
        stacked = len(infos) > 1
        axes = first.axes if not stacked or "c" in first.axes else "".join(a for a in "tczyx" if a in first.axes + "c")
        parts = [open_tiff_array(p, info.series, 0, axes) for p, info in zip(region.inputs, infos, strict=True)]
        for info, part in zip(infos[1:], parts[1:], strict=True):
            if info.dtype != first.dtype:
                raise TiffError(info.path, f"dtype {info.dtype} differs from {first.path} ({first.dtype})")
            other = {a: n for a, n in zip(part.axes, part.shape, strict=True) if a != "c"}
            base = {a: n for a, n in zip(parts[0].axes, parts[0].shape, strict=True) if a != "c"}
            if other != base:
                raise TiffError(info.path, f"size {other} differs from {first.path} ({base})")
        names: list[str] = []
        colors: list[str] = []
        offsets: list[int] = []
        n_c = 0
        for p, info, part in zip(region.inputs, infos, parts, strict=True):
            k = part.shape[axes.index("c")] if "c" in axes else 1
            offsets.append(n_c)
            n_c += k
            if len(info.channel_names) == k and not (
                stacked and k == 1 and info.channel_names[0].startswith("Channel ")
            ):
                names.extend(info.channel_names)
            else:
                names.extend([_stem(p)] if k == 1 else [f"{_stem(p)} {i}" for i in range(k)])
            colors.extend(info.channel_colors or [_PALETTE[(len(colors) + i) % len(_PALETTE)] for i in range(k)])
        shape = list(parts[0].shape)
        if "c" in axes:
            shape[axes.index("c")] = n_c
        return cls(region.name, parts, infos, axes, tuple(shape), np.dtype(first.dtype), names, colors, offsets)

    @property
    def info(self) -> TiffInfo:
        """The first file's description (physical sizes, kind)."""
        return self.infos[0]

    @property
    def channel_chunk(self) -> int:
        """How many channels one source tile holds (3 for interleaved RGB, else 1)."""
        if "c" not in self.axes:
            return 1
        return int(self.parts[0].chunks[self.axes.index("c")])

    @property
    def nbytes(self) -> int:
        """Uncompressed size of the full-resolution image."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def read(self, key: dict[str, int | slice]) -> np.ndarray:
        """Pixels for ``key`` (axis -> int or slice with step 1, every axis given), in ``axes``
        order with the int axes dropped; a ``c`` slice may span several files."""
        if "c" not in self.axes or len(self.parts) == 1:
            return self.parts[0][tuple(key[a] for a in self.axes)]
        c = key["c"]
        drop_c = isinstance(c, int)
        if isinstance(c, int):
            c = slice(c, c + 1)
        start, stop, _ = c.indices(self.shape[self.axes.index("c")])
        pieces = []
        for part, off in zip(self.parts, self.c_offsets, strict=True):
            k = part.shape[self.axes.index("c")]
            lo, hi = max(start, off), min(stop, off + k)
            if lo < hi:
                sub = dict(key, c=slice(lo - off, hi - off))
                pieces.append(part[tuple(sub[a] for a in self.axes)])
        kept = [a for a in self.axes if a == "c" or not isinstance(key[a], int)]
        data = np.concatenate(pieces, axis=kept.index("c"))
        return data.take(0, axis=kept.index("c")) if drop_c else data
