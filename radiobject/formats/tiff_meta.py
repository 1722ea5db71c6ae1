"""TIFF metadata helpers: axis mapping, page checks, OME-XML / SVS / ImageJ physical sizes, channels.

Used by :mod:`radiobject.formats.tiff`; everything here reads tags and XML only, never pixels.
The public names (``NGFF_ORDER``, :func:`affine_from_info`, :func:`level_downsampling`) are
re-exported from :mod:`radiobject.formats.tiff`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tifffile

from radiobject.errors import TiffError

__all__ = ["NGFF_ORDER", "TiffInfo", "affine_from_info", "level_downsampling", "mm_from_unit", "unit_from_mm"]

#: NGFF axis order; every reader output uses a subsequence of it.
NGFF_ORDER = "tczyx"
#: OME / TIFF length units -> NGFF (UDUNITS-2) unit names.
_UNITS = {
    "µm": "micrometer",
    "um": "micrometer",
    "μm": "micrometer",
    "micron": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "pm": "picometer",
    "Å": "angstrom",
    "in": "inch",
    "inch": "inch",
    "s": "second",
    "ms": "millisecond",
    "µs": "microsecond",
    "min": "minute",
    "h": "hour",
}
#: how one unit relates to a millimetre, as ``(mm per unit, units per mm)`` with one side 1: a
#: unit smaller than a millimetre is *divided* by its exact integer count per mm (0.65 um ->
#: ``0.65 / 1000``), never multiplied by an inexact binary fraction such as ``0.001``.
_MM_SCALE: dict[str, tuple[float, float]] = {
    "micrometer": (1.0, 1e3),
    "nanometer": (1.0, 1e6),
    "millimeter": (1.0, 1.0),
    "centimeter": (10.0, 1.0),
    "meter": (1e3, 1.0),
    "picometer": (1.0, 1e9),
    "angstrom": (1.0, 1e7),
    "inch": (25.4, 1.0),
}
_RGB_COLORS = ("FF0000", "00FF00", "0000FF", "FFFFFF")
_PALETTE = ("0000FF", "00FF00", "FF0000", "FFFFFF", "FFFF00", "FF00FF", "00FFFF", "FF8000")


@dataclass(frozen=True)
class TiffInfo:
    """What a TIFF series holds, read from the tags / OME-XML only (no pixel I/O).

    Attributes:
        path: the file.
        kind: ``"ome"``, ``"svs"``, ``"imagej"``, ``"ndpi"``, ... or ``"generic"``.
        series: the series index described; ``n_series`` how many the file has.
        axes: NGFF axes present, a subsequence of ``"tczyx"`` (always ends in ``"yx"``).
        shape: level-0 shape in ``axes`` order.
        levels: the shape of every pyramid level in ``axes`` order, largest first.
        dtype: pixel type.
        physical_size: spacing per spatial/time axis present (``{"x": 0.29, ...}``); 1.0 when unknown.
        units: NGFF unit per axis in ``physical_size`` (``"micrometer"``), ``None`` when unknown.
        channel_names / channel_colors: one per channel (hex ``RRGGBB``); without ``c``, the
            OME name of the single channel if it has one, else empty.
        compression: the TIFF compression scheme name of level 0 (``"JPEG"``, ``"NONE"``, ...).
        tile: (height, width) of a tile, or ``None`` for strips.
        source_axes: tifffile's axes string of the series (e.g. ``"TCYX"``, ``"YXS"``).
    """

    path: str
    kind: str
    series: int
    n_series: int
    axes: str
    shape: tuple[int, ...]
    levels: tuple[tuple[int, ...], ...]
    dtype: np.dtype
    physical_size: dict[str, float] = field(default_factory=dict)
    units: dict[str, str | None] = field(default_factory=dict)
    channel_names: tuple[str, ...] = ()
    channel_colors: tuple[str, ...] = ()
    compression: str = "NONE"
    tile: tuple[int, int] | None = None
    source_axes: str = ""

    @property
    def n_channels(self) -> int:
        """Number of channels (1 without a ``c`` axis)."""
        return self.shape[self.axes.index("c")] if "c" in self.axes else 1

    @property
    def nbytes(self) -> int:
        """Uncompressed size of level 0 in bytes."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def _map_axes(src: str, shape: tuple[int, ...], path: str) -> list[str | None]:
    """Maps each tifffile axis letter to an NGFF axis, or ``None`` for a length-1 axis to drop."""
    out: list[str | None] = []
    letters = set(src)
    for letter, size in zip(src, shape, strict=True):
        name: str | None
        if letter in "TCZYX":
            name = letter.lower()
        elif letter == "S":
            name = None if size == 1 and "C" in letters else "c"
        elif letter in "IQ" and "Z" not in letters:
            name = "z"
        elif letter in "IQR" and "T" not in letters:
            name = "t"
        else:
            name = None
        if name is None and size != 1:
            raise TiffError(path, f"unsupported axis {letter!r} (size {size}) in series axes {src!r}")
        out.append(name)
    named = [n for n in out if n]
    if len(set(named)) != len(named):
        if named.count("c") > 1 and [s for a, s in zip(out, shape, strict=True) if a == "c"].count(1) >= 1:
            # C and S both present but one of them has length 1: drop that one
            idx = next(i for i, (a, s) in enumerate(zip(out, shape, strict=True)) if a == "c" and s == 1)
            out[idx] = None
        else:
            raise TiffError(path, f"unsupported axes {src!r}: two axes map to the same NGFF axis")
    if "y" not in out or "x" not in out:
        raise TiffError(path, f"series axes {src!r} have no Y and X")
    return out


#: Largest decoded / stored size ratio accepted for a compressed TIFF page (zeros compress well;
#: a header claiming more than this is lying or damaged).
MAX_TIFF_RATIO = 100_000


def _check_declared_size(page: Any, counts: Any, comp: int, size: int, path: str) -> None:
    """``TiffError`` when the page's dims declare more bytes than its strips / tiles can hold: a
    lying header is refused before any work is planned over it."""
    dtype = getattr(page, "dtype", None)
    shape = getattr(page, "shape", None)
    if dtype is None or not shape:
        return
    bits = int(getattr(page, "bitspersample", 0) or 0) or np.dtype(dtype).itemsize * 8  # 1-bit / 12-bit packed
    declared = float(np.prod([float(n) for n in shape])) * min(bits, np.dtype(dtype).itemsize * 8) / 8
    stored = float(np.sum(np.asarray(counts, dtype=np.float64))) if len(counts) else 0.0
    limit = float(size) if comp == 1 else max(stored, 1.0) * MAX_TIFF_RATIO
    if declared > limit:
        raise TiffError(
            path,
            f"header dims {tuple(int(n) for n in shape)} declare {declared:.3g} bytes, more than "
            f"the {size}-byte file can hold (lying header or truncated)",
        )


def _check_pages(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, path: str) -> None:
    """Raises :class:`TiffError` for unsupported compression or data past the end of the file."""
    size = int(tif.filehandle.size)
    for level in series.levels:
        for page in level.pages:
            if page is None:
                continue
            keyframe = getattr(page, "keyframe", page)
            comp = keyframe.compression
            if comp != 1:
                try:
                    tifffile.TIFF.DECOMPRESSORS[comp]
                except (KeyError, ValueError, ImportError) as exc:
                    raise TiffError(path, f"unsupported compression {int(comp)} ({exc})") from exc
            offsets, counts = page.dataoffsets, page.databytecounts
            _check_declared_size(page, counts, comp, size, path)
            if len(offsets) and len(counts):
                # strict=False: a malformed file may declare unequal offset / count lists; check the pairs given
                end = max(int(o) + int(c) for o, c in zip(offsets, counts, strict=False))
                if end > size:
                    raise TiffError(path, f"truncated: image data ends at byte {end}, file has {size}")


def _unit(name: str | None) -> str | None:
    if not name:
        return None
    return _UNITS.get(name, name if name in _MM_SCALE else None)


def _ome_pixels(tif: tifffile.TiffFile, series: int) -> ET.Element | None:
    """The ``Pixels`` element of the OME ``Image`` behind ``series`` (matched by name, else index)."""
    if not tif.is_ome or not tif.ome_metadata:
        return None
    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return None
    images = [e for e in root if e.tag.endswith("Image")]
    if not images:
        return None
    name = tif.series[series].name
    chosen = next((im for im in images if im.get("Name") == name), None)
    if chosen is None:
        chosen = images[min(series, len(images) - 1)]
    return next((e for e in chosen if e.tag.endswith("Pixels")), None)


def _ome_color(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        rgba = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"{rgba >> 24 & 255:02X}{rgba >> 16 & 255:02X}{rgba >> 8 & 255:02X}"


def _svs_metadata(description: str) -> dict[str, Any]:
    try:
        return dict(tifffile.tifffile.svs_description_metadata(description))
    except Exception:  # noqa: BLE001 - a malformed description only loses the physical size
        return {}


def _physical(
    tif: tifffile.TiffFile, s: int, axes: str
) -> tuple[dict[str, float], dict[str, str | None], list[str], list[str | None]]:
    """Physical sizes, units, channel names and colors from OME-XML, SVS, ImageJ or resolution tags."""
    size: dict[str, float] = {}
    units: dict[str, str | None] = {}
    names: list[str] = []
    colors: list[str | None] = []
    pixels = _ome_pixels(tif, s)
    page = tif.series[s].levels[0].keyframe
    if pixels is not None:
        for ax in "xyz":
            v = pixels.get(f"PhysicalSize{ax.upper()}")
            if v is not None:
                size[ax] = float(v)
                units[ax] = _unit(pixels.get(f"PhysicalSize{ax.upper()}Unit", "µm"))
        t_inc = pixels.get("TimeIncrement")
        if t_inc is not None:
            size["t"] = float(t_inc)
            units["t"] = _unit(pixels.get("TimeIncrementUnit", "s"))
        for ch in (e for e in pixels if e.tag.endswith("Channel")):
            spp = int(ch.get("SamplesPerPixel", "1") or 1)
            base = ch.get("Name")
            for k in range(spp):
                names.append(
                    f"{base}" if base and spp == 1 else (f"{base} {'RGB'[k] if spp == 3 else k}" if base else "")
                )
                colors.append(_ome_color(ch.get("Color")) if spp == 1 else None)
    elif tif.is_svs and "MPP" in _svs_metadata(tif.pages.first.description):
        mpp = float(_svs_metadata(tif.pages.first.description)["MPP"])
        size.update(x=mpp, y=mpp)
        units.update(x="micrometer", y="micrometer")
    else:
        try:
            rx, ry = page.resolution
            runit = int(page.resolutionunit)
        except Exception:  # noqa: BLE001 - exotic resolution tags only lose the physical size
            rx = ry = 0
            runit = 1
        per = {2: 25400.0, 3: 10000.0}.get(runit)
        if per and rx > 0 and ry > 0 and (rx, ry) != (1, 1):  # 1 pixel / unit = placeholder
            size.update(x=per / rx, y=per / ry)
            units.update(x="micrometer", y="micrometer")
        ij = tif.imagej_metadata or {}
        if ij:
            unit = _unit(str(ij.get("unit", "")).replace("\\u00B5", "µ")) or units.get("x")
            if rx > 0 and ry > 0 and runit == 1:  # ImageJ stores pixels per unit without a unit tag
                size.update(x=1.0 / rx, y=1.0 / ry)
                units.update(x=unit, y=unit)
            if "spacing" in ij:
                size["z"] = float(ij["spacing"])
                units["z"] = unit
    for ax in "tzyx":
        if ax in axes:
            size.setdefault(ax, 1.0)
            units.setdefault(ax, None)
    size = {k: v for k, v in size.items() if k in axes}
    units = {k: v for k, v in units.items() if k in axes}
    return size, units, names, colors


def _channels(
    info_axes: str, shape: tuple[int, ...], src_axes: str, photometric: int, names: list[str], colors: list[str | None]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if "c" not in info_axes:  # one channel: keep an OME name if there is one
        return ((names[0],), (colors[0] or "FFFFFF",)) if len(names) == 1 and names[0] else ((), ())
    n = shape[info_axes.index("c")]
    rgb = "S" in src_axes and photometric in (2, 6) and n in (3, 4)  # RGB / YCbCr
    if len(names) != n or not any(names):
        names = [("R", "G", "B", "A")[i] for i in range(n)] if rgb else [f"Channel {i}" for i in range(n)]
    elif rgb:
        names = [nm or "RGBA"[i] for i, nm in enumerate(names)]
    if len(colors) != n or not all(colors):
        default = _RGB_COLORS if rgb else (("FFFFFF",) if n == 1 else _PALETTE)
        colors = [c or default[i % len(default)] for i, c in enumerate((colors + [None] * (n - len(colors)))[:n])]
    return tuple(str(x) for x in names), tuple(str(c) for c in colors)


def mm_from_unit(value: float, unit: str | None) -> float:
    """``value`` in NGFF length ``unit`` as millimetres; ``None`` or an unknown unit counts as mm.

    Sub-millimetre units are divided by their exact count per mm (``0.65 um -> 0.65 / 1000``).
    """
    per_unit, per_mm = _MM_SCALE.get(unit or "millimeter", (1.0, 1.0))
    return float(value) / per_mm if per_mm != 1.0 else float(value) * per_unit


def unit_from_mm(mm: float, unit: str | None) -> float:
    """Inverse of :func:`mm_from_unit`: millimetres in ``unit`` (``mm * 1000`` for micrometres).

    Two roundings cannot always undo each other: for about 1 size in 70 the result is one binary
    step from the original, so the exact native sizes are the ones kept in ``physical_size``."""
    per_unit, per_mm = _MM_SCALE.get(unit or "millimeter", (1.0, 1.0))
    return float(mm) * per_mm if per_mm != 1.0 else float(mm) / per_unit


def affine_from_info(info: TiffInfo, level: int = 0) -> np.ndarray:
    """Voxel (x, y, z) -> millimetre affine; unknown units count as millimetres.

    Each diagonal entry is ``mm_from_unit(size * downsampling, unit)``: level 0 of a 0.65 um
    image gives exactly ``0.65 / 1000``.
    """
    affine = np.eye(4)
    for i, ax in enumerate("xyz"):
        spacing = info.physical_size.get(ax, 1.0)
        factor = 1.0
        if ax in "xy" and level:
            base = info.levels[0][info.axes.index(ax)]
            factor = base / max(info.levels[level][info.axes.index(ax)], 1)
        affine[i, i] = mm_from_unit(spacing * factor, info.units.get(ax))
    return affine


def level_downsampling(info: TiffInfo) -> list[float]:
    """The x/y downsampling factor of each level relative to level 0 (1.0, 2.0, 4.0 ...)."""
    ix = info.axes.index("x")
    return [info.levels[0][ix] / max(lv[ix], 1) for lv in info.levels]
