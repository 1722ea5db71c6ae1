"""OME-Zarr (NGFF) 0.5 and 0.4 image metadata: builders and a validator.

0.5 (Zarr v3) puts everything under the group attribute ``ome`` (``{"version": "0.5",
"multiscales": [...], "omero": {...}}``); 0.4 (Zarr v2) puts ``multiscales`` (each with
``"version": "0.4"``) and ``omero`` at the top level of ``.zattrs``. Both keep axes ordered time,
channel, then space; datasets largest first, each with exactly one ``scale`` and an optional
``translation``. NGFF cannot express rotation or shear, so the full 4x4 voxel -> world affine is
kept in our own attribute ``radiobject`` next to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from radiobject.errors import RadiObjectError

__all__ = [
    "NGFF_VERSIONS",
    "NgffError",
    "axes_metadata",
    "image_attributes",
    "multiscales_metadata",
    "omero_metadata",
    "read_image_attributes",
    "validate_image_attributes",
]

NGFF_VERSIONS = ("0.5", "0.4")
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_SPACE_UNITS = {
    "angstrom",
    "attometer",
    "centimeter",
    "decimeter",
    "exameter",
    "femtometer",
    "foot",
    "gigameter",
    "hectometer",
    "inch",
    "kilometer",
    "megameter",
    "meter",
    "micrometer",
    "mile",
    "millimeter",
    "nanometer",
    "parsec",
    "petameter",
    "picometer",
    "terameter",
    "yard",
    "yoctometer",
    "yottameter",
    "zeptometer",
    "zettameter",
}
_TIME_UNITS = {
    "attosecond",
    "centisecond",
    "day",
    "decisecond",
    "exasecond",
    "femtosecond",
    "gigasecond",
    "hectosecond",
    "hour",
    "kilosecond",
    "megasecond",
    "microsecond",
    "millisecond",
    "minute",
    "nanosecond",
    "petasecond",
    "picosecond",
    "second",
    "terasecond",
    "yoctosecond",
    "yottasecond",
    "zeptosecond",
    "zettasecond",
}


class NgffError(RadiObjectError, ValueError):
    """NGFF metadata is invalid (names what is wrong)."""


def _check_version(version: str) -> str:
    version = str(version)
    if version not in NGFF_VERSIONS:
        raise NgffError(f"unsupported NGFF version {version!r}; choose one of {NGFF_VERSIONS}")
    return version


def axes_metadata(axes: str, units: Mapping[str, str | None] | None = None) -> list[dict[str, str]]:
    """NGFF ``axes`` for an axis string such as ``"czyx"``: name, type, and unit where known."""
    units = units or {}
    out = []
    for name in axes:
        if name not in _AXIS_TYPES:
            raise NgffError(f"unknown axis {name!r} in {axes!r} (expected a subsequence of 'tczyx')")
        entry = {"name": name, "type": _AXIS_TYPES[name]}
        unit = units.get(name)
        if unit and _AXIS_TYPES[name] in ("space", "time"):
            entry["unit"] = unit
        out.append(entry)
    return out


def multiscales_metadata(
    axes: str,
    level_scales: Sequence[Sequence[float]],
    *,
    units: Mapping[str, str | None] | None = None,
    level_translations: Sequence[Sequence[float] | None] | None = None,
    name: str = "",
    version: str = "0.5",
    downscale_type: str = "mean",
    paths: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One ``multiscales`` entry: axes, one dataset per level (path ``"0"``, ``"1"`` ...).

    Args:
        axes: axis names in array order (``"tczyx"`` subsequence).
        level_scales: per level, the physical size of one voxel along every axis (1 for ``c``).
        level_translations: per level, the physical offset of voxel 0's centre, or ``None``.
        downscale_type: recorded in ``type`` (``"mean"`` or ``"mode"`` / ``"nearest"``).
    """
    version = _check_version(version)
    datasets = []
    for i, scale in enumerate(level_scales):
        if len(scale) != len(axes):
            raise NgffError(f"level {i}: scale has {len(scale)} values for axes {axes!r}")
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [float(v) for v in scale]}]
        trans = level_translations[i] if level_translations else None
        if trans is not None and any(float(v) != 0.0 for v in trans):
            transforms.append({"type": "translation", "translation": [float(v) for v in trans]})
        datasets.append({"path": paths[i] if paths else str(i), "coordinateTransformations": transforms})
    entry: dict[str, Any] = {
        "axes": axes_metadata(axes, units),
        "datasets": datasets,
        "name": name,
        "type": downscale_type,
    }
    if version == "0.4":
        entry = {"version": "0.4", **entry}
    return entry


def omero_metadata(
    channel_names: Sequence[str],
    colors: Sequence[str] | None = None,
    windows: Sequence[tuple[float, float, float, float]] | None = None,
    *,
    version: str = "0.5",
    name: str = "",
) -> dict[str, Any]:
    """The ``omero`` rendering block: one channel per name with label, color and window.

    ``windows`` holds ``(min, max, start, end)`` per channel: the value range of the type and the
    displayed range (typically the data's min / max).
    """
    channels = []
    for i, label in enumerate(channel_names):
        w = windows[i] if windows else (0.0, 65535.0, 0.0, 65535.0)
        channels.append(
            {
                "label": str(label),
                "color": (colors[i] if colors else "FFFFFF").upper(),
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"min": float(w[0]), "max": float(w[1]), "start": float(w[2]), "end": float(w[3])},
            }
        )
    out: dict[str, Any] = {
        "channels": channels,
        "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0},
        "name": name,
    }
    if _check_version(version) == "0.4":
        out["version"] = "0.4"
    return out


def image_attributes(
    multiscales: dict[str, Any],
    *,
    omero: dict[str, Any] | None = None,
    affine: np.ndarray | None = None,
    extra: Mapping[str, Any] | None = None,
    version: str = "0.5",
) -> dict[str, Any]:
    """Group attributes of an NGFF image for ``version``; ``affine`` goes into ``radiobject``.

    The affine is the level-0 voxel (x, y, z) -> world 4x4 matrix (ImageData convention, mm).
    """
    version = _check_version(version)
    own: dict[str, Any] = dict(extra or {})
    if affine is not None:
        a = np.asarray(affine, dtype=np.float64)
        if a.shape != (4, 4) or not np.all(np.isfinite(a)):
            raise NgffError(f"affine must be a finite 4x4 matrix, got shape {a.shape}")
        own["affine"] = a.tolist()
        own["affine_axes"] = ["x", "y", "z"]
    if version == "0.5":
        ome: dict[str, Any] = {"version": "0.5", "multiscales": [multiscales]}
        if omero is not None:
            ome["omero"] = omero
        attrs: dict[str, Any] = {"ome": ome}
    else:
        attrs = {"multiscales": [multiscales]}
        if omero is not None:
            attrs["omero"] = omero
    if own:
        attrs["radiobject"] = own
    return attrs


def read_image_attributes(attrs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(version, ome-dict)`` from group attributes of either version (0.4 gets normalised)."""
    if "ome" in attrs:
        ome = dict(attrs["ome"])
        return str(ome.get("version", "")), ome
    if "multiscales" in attrs:
        ms = list(attrs["multiscales"])
        version = str(ms[0].get("version", "")) if ms else ""
        ome = {"version": version, "multiscales": ms}
        if "omero" in attrs:
            ome["omero"] = attrs["omero"]
        return version, ome
    raise NgffError("no NGFF image metadata ('ome' or 'multiscales') in the attributes")


def validate_image_attributes(
    attrs: Mapping[str, Any],
    version: str | None = None,
    shapes: Sequence[Sequence[int]] | None = None,
) -> None:
    """Checks NGFF image attributes against the 0.5 / 0.4 rules; raises :class:`NgffError`.

    Checks: version, 2-5 axes with unique names, known types, at most one time and one channel
    axis, 2-3 space axes, order time < channel < space; units valid for their type; datasets
    present, each with exactly one ``scale`` first and at most one ``translation`` after it, of
    the axes' length, positive; scales non-decreasing (largest level first); with ``shapes``
    (one per dataset), array rank matches the axes, levels shrink, and ``omero`` has one channel
    per ``c``.
    """
    found, ome = read_image_attributes(attrs)
    if version is not None and found != _check_version(version):
        raise NgffError(f"metadata says NGFF version {found!r}, expected {version!r}")
    _check_version(found)
    if (version == "0.5" or found == "0.5") and "multiscales" in attrs:
        raise NgffError("0.5 metadata must live under 'ome', not at the top level")
    problems: list[str] = []
    multiscales = ome.get("multiscales") or []
    if not multiscales:
        raise NgffError("'multiscales' is empty")
    for m_i, ms in enumerate(multiscales):
        axes = ms.get("axes") or []
        names = [a.get("name") for a in axes]
        types = [a.get("type") for a in axes]
        where = f"multiscales[{m_i}]"
        if not 2 <= len(axes) <= 5:
            problems.append(f"{where}: {len(axes)} axes (need 2-5)")
        if len(set(names)) != len(names):
            problems.append(f"{where}: duplicate axis names {names}")
        if types.count("time") > 1 or types.count("channel") > 1:
            problems.append(f"{where}: more than one time or channel axis")
        if not 2 <= types.count("space") <= 3:
            problems.append(f"{where}: {types.count('space')} space axes (need 2-3)")
        rank = {"time": 0, "channel": 1, "space": 2}
        ranks = [rank.get(t, 1) for t in types]
        if ranks != sorted(ranks):
            problems.append(f"{where}: axes must be ordered time, channel, space; got {types}")
        for a in axes:
            unit = a.get("unit")
            if unit is None:
                continue
            ok = _SPACE_UNITS if a.get("type") == "space" else _TIME_UNITS if a.get("type") == "time" else set()
            if unit not in ok:
                problems.append(f"{where}: axis {a.get('name')!r} has invalid unit {unit!r}")
        datasets = ms.get("datasets") or []
        if not datasets:
            problems.append(f"{where}: no datasets")
        previous = None
        for d_i, ds in enumerate(datasets):
            transforms = ds.get("coordinateTransformations") or []
            kinds = [t.get("type") for t in transforms]
            if (
                not kinds
                or kinds[0] != "scale"
                or kinds.count("scale") != 1
                or kinds.count("translation") > 1
                or len(kinds) > 2
            ):
                problems.append(f"{where}.datasets[{d_i}]: need one 'scale' then optional 'translation', got {kinds}")
                continue
            scale = transforms[0].get("scale") or []
            if len(scale) != len(axes) or any(float(v) <= 0 for v in scale):
                problems.append(f"{where}.datasets[{d_i}]: scale {scale} must be {len(axes)} positive numbers")
                continue
            if len(transforms) == 2 and len(transforms[1].get("translation") or []) != len(axes):
                problems.append(f"{where}.datasets[{d_i}]: translation length != {len(axes)}")
            if previous is not None and any(float(a) < float(b) for a, b in zip(scale, previous, strict=True)):
                problems.append(f"{where}.datasets[{d_i}]: scale {scale} smaller than the previous level's")
            previous = scale
        if shapes is not None:
            if len(shapes) != len(datasets):
                problems.append(f"{where}: {len(shapes)} arrays for {len(datasets)} datasets")
            for d_i, shape in enumerate(shapes):
                if len(shape) != len(axes):
                    problems.append(f"{where}.datasets[{d_i}]: array rank {len(shape)} != {len(axes)} axes")
                # strict=False: the level above may have the wrong rank (already reported just above)
                elif d_i and any(int(a) > int(b) for a, b in zip(shape, shapes[d_i - 1], strict=False)):
                    problems.append(f"{where}.datasets[{d_i}]: shape {list(shape)} larger than level above")
            if "c" in names and "omero" in ome and shapes:
                n_c = int(shapes[0][names.index("c")])
                n_ch = len(ome["omero"].get("channels") or [])
                if n_ch != n_c:
                    problems.append(f"omero: {n_ch} channels for a channel axis of length {n_c}")
    if problems:
        raise NgffError("invalid NGFF metadata: " + "; ".join(problems))
