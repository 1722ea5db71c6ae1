"""read_nifti(reorient=True): the zooms follow the permuted axes; the export round-trips."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject import Volume, WriteOptions
from radiobject.formats.nifti import read_nifti
from radiobject.formats.nifti_orient import permute_zooms
from radiobject.geometry import orientation, spacing

ZOOMS = (0.7, 1.3, 2.9)
#: (orientation code, voxel axis -> (world axis, sign)): LPS flips x and y, PIR permutes all three
LAYOUTS = {
    "LPS": ((0, -1), (1, -1), (2, 1)),
    "PIR": ((1, -1), (2, -1), (0, 1)),
    "SLA": ((2, 1), (0, -1), (1, 1)),
}


def _affine(layout: tuple[tuple[int, int], ...], zooms: tuple[float, ...]) -> np.ndarray:
    a = np.zeros((4, 4))
    for axis, (world, sign) in enumerate(layout):
        a[world, axis] = sign * np.float32(zooms[axis])
    a[:3, 3] = [12.5, -30.25, 7.0]
    a[3, 3] = 1.0
    return a


def _write(path: Path, code: str, tr: float | None = None) -> np.ndarray:
    shape = (5, 6, 7) + ((3,) if tr is not None else ())
    data = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    img = nib.Nifti1Image(data, _affine(LAYOUTS[code], ZOOMS))
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms((*ZOOMS, tr))
    nib.save(img, path)
    return data


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
@pytest.mark.parametrize("code", sorted(LAYOUTS))
def test_reoriented_zooms_are_the_spacing_of_the_new_axes(tmp_path: Path, code: str, ext: str) -> None:
    path = tmp_path / f"{code}{ext}"
    data = _write(path, code, tr=2.5)
    assert orientation(nib.load(path).affine) == code
    img = read_nifti(path, reorient=True)
    assert orientation(img.affine) == "RAS" and img.metadata["original_orientation"] == code
    assert img.metadata["zooms"][:3] == list(spacing(img.affine))  # bit for bit, axis by axis
    assert img.metadata["zooms"][3] == 2.5  # trailing zooms unchanged
    canon = nib.as_closest_canonical(nib.load(path))
    assert img.metadata["zooms"] == [float(z) for z in canon.header.get_zooms()]
    np.testing.assert_array_equal(np.asarray(img.array), np.asarray(canon.dataobj))
    assert img.array.shape[:3] != data.shape[:3] or code == "LPS"


@pytest.mark.parametrize("code", ["PIR", "LPS"])
def test_reoriented_volume_exports_and_reads_back(tmp_path: Path, code: str, backend: str) -> None:
    path = tmp_path / f"{code}.nii.gz"
    _write(path, code, tr=2.5)
    vol = Volume.from_nifti(tmp_path / "v", path, reorient=True, options=WriteOptions(backend=backend))
    assert vol.metadata["zooms"][:3] == list(vol.spacing)
    vol.to_nifti(tmp_path / "out.nii")
    back = nib.load(tmp_path / "out.nii")
    # NIfTI-1 holds the sform in float32: a reoriented origin (-30.25 - 0.7 * 4) is rounded once
    np.testing.assert_array_equal(back.affine, vol.affine.astype(np.float32))
    assert [float(z) for z in back.header.get_zooms()] == vol.metadata["zooms"]
    assert back.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_array_equal(np.asarray(back.dataobj), vol.to_numpy())
    again = read_nifti(tmp_path / "out.nii")  # RAS already: reading it reoriented changes nothing
    assert again.metadata["zooms"] == vol.metadata["zooms"]
    assert read_nifti(tmp_path / "out.nii", reorient=True).metadata["zooms"] == vol.metadata["zooms"]


def test_permute_zooms_fills_a_2d_header_from_the_affine() -> None:
    ornt = np.array([[1, -1], [2, -1], [0, 1]])  # PIR -> RAS
    affine = _affine(LAYOUTS["PIR"], ZOOMS)
    assert permute_zooms([0.5, 0.25, 4.0, 9.0], ornt, affine) == [4.0, 0.5, 0.25, 9.0]
    z = permute_zooms([float(np.float32(0.7)), float(np.float32(1.3))], ornt, affine)
    assert z == [float(np.float32(2.9)), float(np.float32(0.7)), float(np.float32(1.3))]
