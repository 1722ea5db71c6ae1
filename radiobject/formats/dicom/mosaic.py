"""Siemens mosaics: one file holds every slice of a volume as tiles of a 2D image.

The tile count comes from the CSA image header (``NumberOfImagesInMosaic``), the slice direction
from its ``SliceNormalVector``, the slice spacing from SpacingBetweenSlices (else SliceThickness).
ImagePositionPatient in a mosaic refers to the whole mosaic, so the first tile's position is
corrected by half the difference between the mosaic and tile sizes (as nibabel and dcm2niix do).
CSA parsing uses ``nibabel.nicom.csareader``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from pydicom.dataset import Dataset

with warnings.catch_warnings():  # nibabel.nicom warns that its readers are experimental
    warnings.simplefilter("ignore")
    from nibabel.nicom import csareader

from radiobject.formats.dicom.errors import SeriesGeometryError
from radiobject.formats.dicom.frames import Frame, _num, classic_frames


def is_mosaic(ds: Dataset) -> bool:
    """True for a Siemens mosaic image (ImageType contains MOSAIC and a CSA header is present)."""
    it = [str(x).upper() for x in ds.get("ImageType", [])]
    return "MOSAIC" in it and (0x0029, 0x1010) in ds


def _csa(ds: Dataset) -> dict:
    return csareader.get_csa_header(ds, "image")


def mosaic_layout(ds: Dataset) -> tuple[int, int, int, int]:
    """(n_images, tiles per side, tile rows, tile columns) of a mosaic."""
    path = str(getattr(ds, "radiobject_path", ""))
    try:
        n = int(csareader.get_n_mosaic(_csa(ds)))
    except Exception as exc:
        raise SeriesGeometryError(path, f"mosaic without a readable CSA NumberOfImagesInMosaic: {exc}") from exc
    m = math.ceil(math.sqrt(n))
    return n, m, int(ds.Rows) // m, int(ds.Columns) // m


def mosaic_frames(ds: Dataset, index: int) -> list[Frame]:
    """One frame per mosaic tile, positions along the CSA slice normal."""
    base = classic_frames(ds, index)[0]
    n, _, tr, tc = mosaic_layout(ds)
    normal = csareader.get_slice_normal(_csa(ds))
    iop = base.iop
    if normal is None:
        normal = np.cross(iop[:3], iop[3:])
    normal = np.asarray(normal, dtype=np.float64)
    spacing = _num(ds.get("SpacingBetweenSlices"), 0.0) or _num(ds.get("SliceThickness"), 1.0)
    rs, cs = base.pixel_spacing
    shift = iop[3:] * rs * (int(ds.Rows) - tr) / 2 + iop[:3] * cs * (int(ds.Columns) - tc) / 2
    first = base.ipp + shift
    return [
        Frame(
            index,
            None,
            t,
            first + normal * spacing * t,
            iop,
            base.pixel_spacing,
            tr,
            tc,
            base.slope,
            base.intercept,
            base.order,
        )
        for t in range(n)
    ]


def extract_tile(mosaic: np.ndarray, tile: int, m: int, tr: int, tc: int) -> np.ndarray:
    """Cut tile ``tile`` (row-major over an ``m`` x ``m`` grid) out of a decoded mosaic."""
    r, c = divmod(tile, m)
    return mosaic[r * tr : (r + 1) * tr, c * tc : (c + 1) * tc]
