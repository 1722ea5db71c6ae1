"""NIfTI reading against nibabel's own test files, both backends: dtype, values, affine bit-exact."""

from __future__ import annotations

import glob
import gzip
import os

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from radiobject import NiftiReadError, Volume, WriteOptions
from radiobject.formats.nifti import read_nifti

NIFTIS = sorted(
    p for p in glob.glob(os.path.join(data_path, "*.nii*")) if not os.path.basename(p).endswith(".dconn.nii")
)


@pytest.mark.parametrize("path", NIFTIS, ids=os.path.basename)
def test_round_trip_every_nibabel_nifti(path: str, backend: str, tmp_path) -> None:
    ref = nib.load(path)
    raw = np.asarray(ref.dataobj.get_unscaled())
    vol = Volume.from_nifti(str(tmp_path / "v"), path, options=WriteOptions(backend=backend))
    reopened = Volume(str(tmp_path / "v"))
    for v in (vol, reopened):
        assert v.shape == raw.shape
        assert v.dtype == raw.dtype.newbyteorder("=")  # big-endian files stored native, same values
        np.testing.assert_array_equal(v.to_numpy(), raw)
        assert np.array_equal(v.affine, ref.affine)  # bit-exact
    slope, inter = ref.header.get_slope_inter()
    np.testing.assert_allclose(reopened.to_numpy(scaled=True), np.asarray(ref.get_fdata(), dtype=np.float32), rtol=1e-6)
    out = tmp_path / "out.nii.gz"
    reopened.to_nifti(out)
    back = nib.load(out)
    assert back.get_data_dtype() == raw.dtype.newbyteorder("=")
    assert np.array_equal(back.affine, ref.affine)
    np.testing.assert_array_equal(np.asarray(back.dataobj.get_unscaled()), raw)
    assert back.header.get_slope_inter() == (slope, inter) or slope is None


def test_example4d_known_values(backend: str, tmp_path) -> None:
    vol = Volume.from_nifti(str(tmp_path / "v"), os.path.join(data_path, "example4d.nii.gz"),
                            options=WriteOptions(backend=backend))
    data = vol.to_numpy()
    assert vol.dtype == np.int16 and data.dtype == np.int16
    assert vol.shape == (128, 96, 24, 2)
    assert vol.metadata["zooms"] == pytest.approx([2, 2, 2.2, 2000])
    assert vol.spacing == pytest.approx((2, 2, 2.2), rel=1e-6)
    assert int(np.count_nonzero(data)) == 229725
    assert int(data.max()) == 1162


def test_nifti2_kept_as_nifti2(tmp_path) -> None:
    vol = Volume.from_nifti(str(tmp_path / "v"), os.path.join(data_path, "example_nifti2.nii.gz"))
    vol.to_nifti(tmp_path / "o.nii")
    assert isinstance(nib.load(tmp_path / "o.nii"), nib.Nifti2Image)


def test_reorient_to_ras_is_optional(tmp_path) -> None:
    path = os.path.join(data_path, "anatomical.nii")
    assert "".join(nib.aff2axcodes(nib.load(path).affine)) != "RAS"
    kept = read_nifti(path)
    ras = read_nifti(path, reorient=True)
    assert "".join(nib.aff2axcodes(kept.affine)) == "".join(nib.aff2axcodes(nib.load(path).affine))
    assert "".join(nib.aff2axcodes(ras.affine)) == "RAS"
    assert ras.metadata["original_orientation"] != "RAS"


def test_cifti_is_rejected_with_reason() -> None:
    with pytest.raises(NiftiReadError, match="row_major.dconn.nii.*not a NIfTI image"):
        read_nifti(os.path.join(data_path, "row_major.dconn.nii"))


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b"this is not an image at all" * 20), "not a readable NIfTI"),
        (lambda p: p.write_bytes(gzip.compress(open(os.path.join(data_path, "example4d.nii.gz"), "rb").read())[:0] or
                                 open(os.path.join(data_path, "example4d.nii.gz"), "rb").read()[:30000]),
         "truncated|corrupt|not a readable"),
    ],
    ids=["garbage", "truncated-gz"],
)
def test_bad_files_raise_typed_errors(tmp_path, make, reason) -> None:
    p = tmp_path / "bad.nii.gz"
    make(p)
    with pytest.raises(NiftiReadError, match=reason) as info:
        read_nifti(p)
    assert str(p) in str(info.value)


def test_truncated_uncompressed_and_absurd_dims(tmp_path) -> None:
    src = os.path.join(data_path, "anatomical.nii")
    short = tmp_path / "short.nii"
    short.write_bytes(open(src, "rb").read()[:-1000])
    with pytest.raises(NiftiReadError, match="truncated"):
        read_nifti(short)
    huge = tmp_path / "huge.nii.gz"
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape((30000, 30000, 30000))  # 100 TB of float32: a corrupt header
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
    nib.save(img, huge)
    raw = bytearray(gzip.decompress(huge.read_bytes()))
    raw[:348] = hdr.binaryblock
    huge.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(NiftiReadError, match="GiB"):
        read_nifti(huge)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(NiftiReadError, match="does not exist"):
        read_nifti(tmp_path / "nope.nii.gz")
