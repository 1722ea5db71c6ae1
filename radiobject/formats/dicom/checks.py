"""Checks on the frames of a series before it is assembled: one geometry, complete, in budget."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from radiobject.formats.dicom.discover import SeriesInfo
from radiobject.formats.dicom.errors import InputTooLargeError, SeriesGeometryError
from radiobject.formats.dicom.frames import Frame
from radiobject.formats.dicom.inputs import max_image_bytes
from radiobject.formats.dicom.mosaic import is_mosaic
from radiobject.formats.dicom.multiframe import is_enhanced

#: frames whose projections on the normal differ by less than this (mm) share a position
POSITION_TOLERANCE_MM = 0.01


def check_consistent(frames: list[Frame], where: str) -> None:
    """Raise SeriesGeometryError when frames mix sizes, orientations or pixel spacings."""
    f0 = frames[0]
    for f in frames[1:]:
        if (f.rows, f.cols) != (f0.rows, f0.cols):
            raise SeriesGeometryError(where, f"mixed image sizes {f0.rows}x{f0.cols} and {f.rows}x{f.cols}")
        if np.abs(f.iop - f0.iop).max() > 1e-3:
            raise SeriesGeometryError(
                where,
                "mixed slice orientations in one series "
                f"({np.round(f0.iop, 4).tolist()} vs {np.round(f.iop, 4).tolist()})",
            )
        if np.abs(np.subtract(f.pixel_spacing, f0.pixel_spacing)).max() > 1e-4:
            raise SeriesGeometryError(where, f"mixed pixel spacing {f0.pixel_spacing} vs {f.pixel_spacing}")


def group_positions(frames: list[Frame], normal: np.ndarray, where: str) -> list[list[Frame]]:
    """Frames grouped by position along ``normal`` (sorted), each group in acquisition order."""
    d = np.array([f.ipp @ normal for f in frames])
    order = np.argsort(d, kind="stable")
    groups: list[list[Frame]] = []
    last = None
    for i in order:
        if last is None or d[i] - last > POSITION_TOLERANCE_MM:
            groups.append([])
        groups[-1].append(frames[i])
        last = d[i] if last is None or d[i] - last > POSITION_TOLERANCE_MM else last
    counts = [len(g) for g in groups]
    if len(set(counts)) > 1:
        raise SeriesGeometryError(
            where,
            "inconsistent number of images per slice position "
            f"(between {min(counts)} and {max(counts)} over {len(groups)} "
            "positions): incomplete or mixed acquisition",
        )
    for g in groups:
        g.sort(key=lambda f: f.order)
    return groups


def missing_instances(info: SeriesInfo) -> list[int]:
    """InstanceNumbers absent between the first and last of a classic single-frame series."""
    if info.split or any(is_enhanced(d) or is_mosaic(d) for d in info.datasets[:1]):
        return []
    try:
        numbers = [int(d.InstanceNumber) for d in info.datasets]
    except (AttributeError, TypeError, ValueError):
        return []
    have = set(numbers)
    if len(have) != len(numbers) or len(numbers) < 2:
        return []  # repeated numbers (e.g. per volume): no contiguous range to check
    return sorted(set(range(min(have), max(have) + 1)) - have)


def check_budget(ordered: list[Frame], first: Dataset, where: str) -> None:
    """Refuse a series whose declared pixel data exceeds the memory budget, before decoding."""
    f0 = ordered[0]
    item = max(1, int(first.get("BitsAllocated", 16) or 16) // 8) * int(first.get("SamplesPerPixel", 1) or 1)
    need = len(ordered) * f0.rows * f0.cols * max(item, 4)  # the LUT may widen to 4 bytes
    limit = max_image_bytes()
    if need > limit:
        raise InputTooLargeError(
            where,
            f"{len(ordered)} images of {f0.rows}x{f0.cols} would need {need / 2**20:.1f} MiB "
            f"(limit {limit / 2**20:.1f} MiB; set RADIOBJECT_MAX_IMAGE_BYTES to raise it)",
        )


__all__ = ["POSITION_TOLERANCE_MM", "check_budget", "check_consistent", "group_positions", "missing_instances"]
