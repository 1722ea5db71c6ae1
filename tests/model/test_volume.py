"""Volume: creation, regional reads, geometry, anatomical planes on non-RAS data, pickling."""

from __future__ import annotations

import os
import pickle

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, ornt_transform
from nibabel.testing import data_path

from radiobject import Volume, WriteOptions
from radiobject.errors import GeometryError, StoreNotFoundError


def _ras_volume(shape=(30, 34, 26)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    data = rng.integers(-1000, 2000, shape).astype(np.int16)
    affine = np.array([[1.5, 0, 0, -20.0], [0, 1.25, 0, -30.0], [0, 0, 2.0, 10.0], [0, 0, 0, 1]])
    return data, affine


def _reorient(data: np.ndarray, affine: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with another axis order / direction (nibabel does the maths)."""
    img = nib.Nifti1Image(data, affine)
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(codes)))
    out = img.as_reoriented(transform)
    return np.asarray(out.dataobj), out.affine


def test_from_numpy_geometry_and_regions(backend: str, tmp_path) -> None:
    data, affine = _ras_volume()
    vol = Volume.from_numpy(str(tmp_path / "v"), data, affine, options=WriteOptions(backend=backend))
    v = Volume(str(tmp_path / "v"))
    assert v.shape == data.shape and v.dtype == np.int16
    assert np.array_equal(v.affine, affine) and v.spacing == (1.5, 1.25, 2.0) and v.orientation == "RAS"
    np.testing.assert_array_equal(v[3:17, 5:29, 1:25], data[3:17, 5:29, 1:25])
    np.testing.assert_array_equal(v[5], data[5])
    np.testing.assert_array_equal(v[..., -1], data[..., -1])
    out = np.zeros((14, 24, 24), np.int16)
    assert v.read((slice(3, 17), slice(5, 29), slice(1, 25)), out=out) is out
    np.testing.assert_array_equal(out, data[3:17, 5:29, 1:25])
    with pytest.raises(IndexError):
        v[0:10:2]
    with pytest.raises(IndexError):
        v[99]
    assert vol.chunks == v.chunks


@pytest.mark.parametrize("codes", ["LPS", "LAS", "PSR", "IRP", "ASL"])
def test_planes_follow_anatomy(backend: str, tmp_path, codes: str) -> None:
    data, affine = _ras_volume()
    ras = Volume.from_numpy(str(tmp_path / "ras"), data, affine, options=WriteOptions(backend=backend))
    odata, oaff = _reorient(data, affine, codes)
    other = Volume.from_numpy(str(tmp_path / "o"), odata, oaff, options=WriteOptions(backend=backend))
    assert other.orientation == codes
    for plane in ("axial", "sagittal", "coronal"):
        n = ras.n_slices(plane)
        assert other.n_slices(plane) == n
        for i in (0, n // 2, n - 1):
            np.testing.assert_array_equal(other.plane(plane, i), ras.plane(plane, i))
    np.testing.assert_array_equal(ras.axial(4), data[:, :, 4])
    np.testing.assert_array_equal(ras.sagittal(7), data[7])
    np.testing.assert_array_equal(ras.coronal(2), data[:, 2, :])


def test_planes_on_real_las_file(tmp_path) -> None:
    path = os.path.join(data_path, "anatomical.nii")
    img = nib.load(path)
    assert "".join(nib.aff2axcodes(img.affine)) == "LAS"
    las = Volume.from_nifti(str(tmp_path / "las"), path)
    ras = Volume.from_nifti(str(tmp_path / "ras"), path, reorient=True)
    for plane in ("axial", "sagittal", "coronal"):
        for i in range(0, las.n_slices(plane), 7):
            np.testing.assert_array_equal(las.plane(plane, i), ras.plane(plane, i))


def test_4d_volume_and_planes(backend: str, tmp_path) -> None:
    data = np.arange(8 * 9 * 10 * 3, dtype=np.float32).reshape(8, 9, 10, 3)
    v = Volume.from_numpy(str(tmp_path / "v"), data, np.eye(4), options=WriteOptions(backend=backend))
    assert v.shape == (8, 9, 10, 3) and v.chunks[3] == 1
    np.testing.assert_array_equal(v.to_numpy(), data)
    np.testing.assert_array_equal(v.axial(2), data[:, :, 2, :])
    np.testing.assert_array_equal(v[1:3, 2:4, 5, 1:3], data[1:3, 2:4, 5, 1:3])


def test_pickle_reopens(backend: str, tmp_path) -> None:
    data, affine = _ras_volume((10, 11, 12))
    v = Volume.from_numpy(str(tmp_path / "v"), data, affine, options=WriteOptions(backend=backend))
    v2 = pickle.loads(pickle.dumps(v))
    np.testing.assert_array_equal(v2.to_numpy(), data)
    assert np.array_equal(v2.affine, affine)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "int32", "float32", "float64", "bool"])
def test_dtypes_kept(backend: str, tmp_path, dtype: str) -> None:
    data = (np.random.default_rng(0).random((9, 10, 11)) * 100).astype(dtype)
    v = Volume.from_numpy(str(tmp_path / "v"), data, options=WriteOptions(backend=backend))
    assert Volume(str(tmp_path / "v")).dtype == np.dtype(dtype)
    np.testing.assert_array_equal(Volume(str(tmp_path / "v")).to_numpy(), data)
    assert v.dtype == np.dtype(dtype)


def test_bad_affine_and_missing_volume(tmp_path) -> None:
    with pytest.raises(GeometryError, match="4x4"):
        Volume.from_numpy(str(tmp_path / "a"), np.zeros((2, 2, 2)), np.eye(3))
    with pytest.raises(GeometryError, match="singular"):
        Volume.from_numpy(str(tmp_path / "b"), np.zeros((2, 2, 2)), np.zeros((4, 4)))
    with pytest.raises(StoreNotFoundError, match="nowhere"):
        Volume(str(tmp_path / "nowhere"))


def test_numpy_asarray_gives_the_stored_voxels(tmp_path) -> None:
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    vol = Volume.from_numpy(str(tmp_path / "v"), data)
    out = np.asarray(vol)
    assert out.dtype == np.int16 and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, data)
    assert np.asarray(vol, dtype=np.float32).dtype == np.float32
