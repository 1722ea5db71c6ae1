"""RTSTRUCT contours -> a label volume on the grid of the referenced image series.

Each CLOSED_PLANAR contour is mapped into the reference volume's voxel space (LPS -> RAS, then the
inverse affine), assigned to the nearest slice, and filled with ``skimage.draw.polygon``. Several
contours of one ROI on one slice combine by the even-odd rule (XOR: a contour inside another is a
hole); the polygon boundary pixels themselves always count as inside, which matches contours
traced through boundary pixel centres (rt-utils, most TPS exports). ROIs get label values 1..n in
StructureSetROISequence order; where ROIs overlap the later one wins and a warning names both.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pydicom
from skimage.draw import polygon, polygon_perimeter

from radiobject.formats.dicom.errors import DicomError
from radiobject.formats.image import ImageData

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
#: a contour further than this (in slices) from the nearest slice centre is reported
SLICE_TOLERANCE = 0.25


def _fill(ij: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    rr, cc = polygon(ij[:, 0], ij[:, 1], shape=shape)
    mask[rr, cc] = True
    return mask


def _perimeter(ij: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    rr, cc = polygon_perimeter(np.rint(ij[:, 0]), np.rint(ij[:, 1]), shape=shape, clip=False)
    ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
    mask[rr[ok], cc[ok]] = True
    return mask


def read_rtstruct(
    rtstruct: str | os.PathLike[str],
    reference: ImageData | str | os.PathLike[str],
) -> tuple[ImageData, dict[str, int]]:
    """Rasterise an RTSTRUCT onto the grid of its image series.

    Args:
        rtstruct: path of the RTSTRUCT file.
        reference: the referenced series as read by :func:`read_dicom_series` (or its folder).

    Returns:
        ``(labels, table)``: a uint8 / uint16 (x, y, z) label volume with the reference's affine
        (``metadata["warnings"]`` lists overlaps / off-slice contours, ``metadata["labels"]`` the
        table) and ``{roi_name: label_value}``.

    Raises:
        DicomError: not an RTSTRUCT, or no contour data.
    """
    from radiobject.formats.dicom.series import read_dicom_series

    path = str(rtstruct)
    if not isinstance(reference, ImageData):
        reference = read_dicom_series(reference)
    try:
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:  # no preamble / file meta
            ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise DicomError(path, f"cannot read RTSTRUCT: {exc}") from exc
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS and ds.get("Modality") != "RTSTRUCT":
        raise DicomError(path, f"not an RTSTRUCT (Modality {ds.get('Modality')})")
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    table = {name: i + 1 for i, name in enumerate(names.values())}
    value_of = {num: table[name] for num, name in names.items()}
    shape3 = (int(reference.shape[0]), int(reference.shape[1]), int(reference.shape[2]))
    inv = np.linalg.inv(reference.affine)
    n = len(table)
    labels = np.zeros(shape3, dtype=np.uint8 if n < 256 else np.uint16)
    warnings: list[str] = []
    owner: dict[int, str] = {}
    for roi in ds.get("ROIContourSequence", []):
        num = int(roi.ReferencedROINumber)
        name = names.get(num, f"ROI {num}")
        value = value_of.get(num)
        if value is None:
            table[name] = value = len(table) + 1
        per_slice: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for c in roi.get("ContourSequence", []):
            if str(c.get("ContourGeometricType", "CLOSED_PLANAR")) not in (
                "CLOSED_PLANAR",
                "",
            ):
                continue
            pts = np.asarray(c.ContourData, dtype=np.float64).reshape(-1, 3)
            pts[:, :2] *= -1  # LPS -> RAS
            vox = (inv @ np.c_[pts, np.ones(len(pts))].T).T[:, :3]
            k = int(np.rint(vox[:, 2].mean()))
            if np.abs(vox[:, 2] - k).max() > SLICE_TOLERANCE:
                warnings.append(
                    f"ROI {name!r}: a contour lies {np.abs(vox[:, 2] - k).max():.2f} slices "
                    "off the nearest slice centre"
                )
            if not 0 <= k < shape3[2]:
                warnings.append(f"ROI {name!r}: a contour lies outside the reference volume (slice {k})")
                continue
            xor, edge = per_slice.get(k, (np.zeros(shape3[:2], bool), np.zeros(shape3[:2], bool)))
            per_slice[k] = (
                xor ^ (_fill(vox[:, :2], shape3[:2]) | _perimeter(vox[:, :2], shape3[:2])),
                edge | _perimeter(vox[:, :2], shape3[:2]),
            )
        for k, (xor, edge) in per_slice.items():
            m = xor | edge
            clash = np.unique(labels[:, :, k][m & (labels[:, :, k] > 0)])
            for other in clash:
                msg = f"ROIs {owner.get(int(other), other)!r} and {name!r} overlap: {name!r} wins there"
                if msg not in warnings:
                    warnings.append(msg)
            labels[:, :, k][m] = value
        owner[value] = name
    if not table:
        raise DicomError(path, "RTSTRUCT has no ROIs")
    meta: dict[str, Any] = {
        "format": "dicom-rtstruct",
        "labels": dict(table),
        "warnings": warnings,
        "reference_series_uid": reference.metadata.get("series_uid"),
    }
    return ImageData(labels, reference.affine.copy(), meta, source=path), dict(table)
