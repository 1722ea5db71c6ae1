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
    vol = Volume.from_nifti(
        str(tmp_path / "v"), os.path.join(data_path, "example4d.nii.gz"), options=WriteOptions(backend=backend)
    )
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
        (
            lambda p: p.write_bytes(
                gzip.compress(open(os.path.join(data_path, "example4d.nii.gz"), "rb").read())[:0]
                or open(os.path.join(data_path, "example4d.nii.gz"), "rb").read()[:30000]
            ),
            "truncated|corrupt|not a readable",
        ),
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


# ---------------------------------------------------------------- hostile inputs (issue 10)
def _save(path, array: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 2.0, 1.0])), str(path))


def test_wrong_gzip_crc_is_an_error(tmp_path) -> None:
    p = tmp_path / "crc.nii.gz"
    _save(p, np.arange(4000, dtype=np.int16).reshape(10, 20, 20))
    raw = bytearray(p.read_bytes())
    raw[-8] ^= 0xFF  # the CRC32 of the gzip trailer; the deflate data (and the voxels) are intact
    p.write_bytes(bytes(raw))
    assert nib.load(str(p)).shape == (10, 20, 20)  # nibabel opens it
    with pytest.raises(NiftiReadError, match="gzip") as info:
        read_nifti(p)
    assert str(p) in str(info.value)


def test_gzip_stream_ending_early_is_an_error(tmp_path) -> None:
    p = tmp_path / "short.nii.gz"
    _save(p, np.random.default_rng(0).integers(0, 999, (30, 30, 30)).astype(np.int16))
    whole = p.read_bytes()
    p.write_bytes(whole[: len(whole) - 200])  # header fits, the stream (and trailer) end early
    with pytest.raises(NiftiReadError, match="truncated|corrupt"):
        read_nifti(p)


def test_header_claiming_32_gb_refused_before_reading(tmp_path) -> None:
    p = tmp_path / "claims.nii.gz"
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape((2048, 2048, 2048))  # 32 GiB of float32
    body = hdr.binaryblock + b"\x00" * 4 + b"\x00" * 1000
    p.write_bytes(gzip.compress(body))
    with pytest.raises(NiftiReadError, match="GiB|cannot hold") as info:
        read_nifti(p, max_bytes=64 << 30)  # even under a large budget: the stream is too small to hold it
    assert str(p) in str(info.value)
    with pytest.raises(NiftiReadError, match="GiB"):
        read_nifti(p, max_bytes=1 << 30)


def test_gzip_bomb_bounded(tmp_path) -> None:
    """A small header followed by far more decompressed data than it declares: refused, bounded."""
    p = tmp_path / "bomb.nii.gz"
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4))
    single = img.header.copy()
    single.set_data_offset(352)
    body = single.binaryblock + b"\x00" * 4 + b"\x00" * (64 << 20)  # 64 MiB after a 64-byte image
    p.write_bytes(gzip.compress(body, 1))
    with pytest.raises(NiftiReadError, match="more than"):
        read_nifti(p)


def test_rgb24_is_a_typed_error(tmp_path) -> None:
    p = tmp_path / "rgb.nii.gz"
    rgb = np.zeros((4, 5, 6), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(p))
    with pytest.raises(NiftiReadError, match="RGB") as info:
        read_nifti(p)
    assert str(p) in str(info.value)


@pytest.mark.timeout(20)
def test_fifo_and_device_never_opened(tmp_path) -> None:
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(NiftiReadError, match="FIFO"):
        read_nifti(fifo)
    with pytest.raises(NiftiReadError, match="device"):
        read_nifti("/dev/zero")
    with pytest.raises(NiftiReadError, match="regular file"):
        read_nifti(tmp_path)


def test_good_gzip_read_matches_nibabel(tmp_path) -> None:
    p = tmp_path / "ok.nii.gz"
    arr = np.random.default_rng(1).standard_normal((7, 8, 9)).astype(">f4")  # big-endian input
    nib.save(nib.Nifti1Image(arr, np.diag([0.7, 0.8, 0.9, 1.0])), str(p))
    ref = nib.load(str(p))
    got = read_nifti(p)
    assert got.dtype == np.float32 and got.dtype.byteorder in ("=", "|")
    np.testing.assert_array_equal(got.array, np.asarray(ref.dataobj.get_unscaled()))
    assert np.array_equal(got.affine, ref.affine)
