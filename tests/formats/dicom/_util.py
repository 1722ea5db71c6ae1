"""Helpers shared by the DICOM tests: compare a read volume with a reference NIfTI."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import (
    apply_orientation,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from radiobject.formats.image import ImageData


def reorient_to(array: np.ndarray, affine: np.ndarray, ref_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip / permute the first three axes of ``array`` into the axis order of ``ref_affine``."""
    t = ornt_transform(io_orientation(affine), io_orientation(ref_affine))
    return apply_orientation(array, t), affine @ inv_ornt_aff(t, array.shape[:3])


def load_reference(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (scl_slope / scl_inter applied; RGB records as a trailing axis) and affine."""
    ref = nib.load(str(path))
    data = np.asanyarray(ref.dataobj)
    if data.dtype.names:
        data = np.stack([data[c] for c in "RGB"], -1)
    return data, ref.affine


def assert_matches_reference(img: ImageData, ref_path: Path, *, atol_affine: float = 1e-3) -> None:
    """Voxel-exact (float: 1e-6 relative) and affine within ``atol_affine`` mm after reorienting."""
    ref, ref_aff = load_reference(ref_path)
    ours, aff = reorient_to(np.asarray(img.array), img.affine, ref_aff)
    assert ours.shape == ref.shape, f"{ref_path.name}: shape {ours.shape} vs {ref.shape}"
    if ref.dtype.kind == "f" or ours.dtype.kind == "f":
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-4, err_msg=ref_path.name)
    else:
        np.testing.assert_array_equal(ours, ref, err_msg=ref_path.name)
    np.testing.assert_allclose(aff, ref_aff, atol=atol_affine, rtol=0, err_msg=ref_path.name)
