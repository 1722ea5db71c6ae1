"""DICOM-SEG -> a label volume (highdicom), optionally placed on a reference series' grid."""

from __future__ import annotations

import os
import warnings as _warnings
from typing import Any

import numpy as np

from radiobject.formats.dicom.errors import DicomError, SeriesGeometryError
from radiobject.formats.dicom.geometry import LPS_TO_RAS
from radiobject.formats.image import ImageData


def read_dicom_seg(
    seg_path: str | os.PathLike[str],
    reference: ImageData | None = None,
) -> tuple[ImageData, dict[str, int]]:
    """Read a DICOM Segmentation as one label volume (value = segment number).

    Args:
        seg_path: the SEG file.
        reference: optional image (e.g. from :func:`read_dicom_series`); the labels are placed on
            its grid (the SEG frames must lie on that grid: same planes, same pixel lattice).

    Returns:
        ``(labels, table)``: (x, y, z) uint8 / uint16 labels with a voxel -> RAS affine, and
        ``{segment_label: segment_number}``.

    Raises:
        DicomError: unreadable, overlapping segments, or frames off the reference grid.
    """
    import highdicom as hd

    path = str(seg_path)
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            seg = hd.seg.segread(path)
            vol = seg.get_volume(combine_segments=True, relabel=False)
    except Exception as exc:
        raise DicomError(path, f"cannot read DICOM-SEG: {exc}") from exc
    table = {str(s.SegmentLabel): int(s.SegmentNumber) for s in seg.SegmentSequence}
    # highdicom: array (slice, row, col), affine (slice, row, col) -> LPS; ours: (col, row, slice) -> RAS
    arr = np.asarray(vol.array).transpose(2, 1, 0)
    aff = LPS_TO_RAS @ np.asarray(vol.affine)[:, [2, 1, 0, 3]]
    dtype = np.uint8 if max(table.values(), default=0) < 256 else np.uint16
    arr = arr.astype(dtype)
    meta: dict[str, Any] = {
        "format": "dicom-seg",
        "labels": table,
        "warnings": [],
        "segmentation_type": str(seg.SegmentationType),
    }
    if reference is None:
        return ImageData(arr, aff, meta, source=path), table
    t = np.linalg.inv(reference.affine) @ aff  # seg voxel -> reference voxel
    out = np.zeros(tuple(reference.shape[:3]), dtype=dtype)
    rot = t[:3, :3]
    if not (
        np.allclose(rot, np.round(rot), atol=1e-3)
        and np.allclose(t[:3, 3], np.round(t[:3, 3]), atol=1e-2)
        and np.allclose(np.abs(np.round(rot)).sum(axis=0), 1)
    ):
        raise SeriesGeometryError(path, "SEG frames are not on the reference series' voxel grid")
    idx = np.indices(arr.shape).reshape(3, -1)
    dst = (np.round(rot) @ idx + np.round(t[:3, 3])[:, None]).astype(int)
    ok = np.all((dst >= 0) & (dst < np.array(out.shape)[:, None]), axis=0)
    if not ok.all() and np.any(arr.reshape(-1)[~ok]):
        meta["warnings"].append("some segment voxels lie outside the reference volume (dropped)")
    out[tuple(dst[:, ok])] = arr.reshape(-1)[ok]
    return ImageData(out, reference.affine.copy(), meta, source=path), table
