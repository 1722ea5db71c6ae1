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


# --- header layout: vox_offset and extensions (issue 10) ----------------------------------------

_EXT_CONTENT = b"radiobject test extension"  # 25 bytes: esize 48 (8 + 25, padded to 16)
_VOX_AT, _EXT_AT = 108, 352  # NIfTI-1: vox_offset (float32) and the first extension's esize


def _with_extension(path) -> np.ndarray:
    """A small NIfTI-1 with one real (comment) extension at ``path``; returns its voxels."""
    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    img = nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0]))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, _EXT_CONTENT))
    nib.save(img, str(path))
    return data


def _raw(path) -> bytearray:
    blob = path.read_bytes()
    return bytearray(gzip.decompress(blob) if str(path).endswith(".gz") else blob)


def _put(path, raw: bytes) -> None:
    path.write_bytes(gzip.compress(bytes(raw)) if str(path).endswith(".gz") else bytes(raw))


def _patched(path, at: int, value: bytes) -> None:
    raw = _raw(path)
    raw[at : at + len(value)] = value
    _put(path, raw)


LAYOUT_DAMAGE = {
    "extension_overlaps_data": (_EXT_AT, np.int32(64).tobytes(), r"esize 64\) ends at byte 416, past vox_offset 400"),
    "esize_0": (_EXT_AT, np.int32(0).tobytes(), r"declares esize 0 \(must be a positive multiple of 16\)"),
    "esize_not_multiple_of_16": (_EXT_AT, np.int32(40).tobytes(), r"declares esize 40 \(must be a positive multiple"),
    "vox_offset_past_end": (_VOX_AT, np.float32(1e6).tobytes(), r"vox_offset 1000000 \+ 48 voxel bytes"),
    "vox_offset_negative": (_VOX_AT, np.float32(-16).tobytes(), r"vox_offset -16.0 lies inside the header"),
    "vox_offset_inside_header": (_VOX_AT, np.float32(348).tobytes(), r"vox_offset 348.0 lies inside the header"),
    "vox_offset_nan": (_VOX_AT, np.float32("nan").tobytes(), r"vox_offset is nan"),
}


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("case", sorted(LAYOUT_DAMAGE))
def test_damaged_header_layout_refused(tmp_path, suffix: str, case: str) -> None:
    """Each damage of the header layout: ``NiftiReadError`` naming the file and the field."""
    p = tmp_path / f"{case}{suffix}"
    _with_extension(p)
    raw = _raw(p)
    assert np.frombuffer(bytes(raw[_VOX_AT : _VOX_AT + 4]), "<f4")[0] == 400  # 352 + one 48-byte extension
    assert np.frombuffer(bytes(raw[_EXT_AT : _EXT_AT + 4]), "<i4")[0] == 48
    at, value, reason = LAYOUT_DAMAGE[case]
    _patched(p, at, value)
    with pytest.raises(NiftiReadError, match=reason) as info:
        read_nifti(p)
    assert str(info.value).startswith(f"{p}: ")
    with pytest.raises(NiftiReadError, match=reason):  # the header-only open (geometry checks) too
        from radiobject.formats.nifti import load_header

        load_header(p)


def test_extension_chain_past_the_end_of_the_stream(tmp_path) -> None:
    """A ``.nii.gz`` whose vox_offset lies past the end of its stream and whose extension chain
    runs into that end (the chain is walked up to vox_offset)."""
    p = tmp_path / "chain.nii.gz"
    _with_extension(p)
    raw = _raw(p)
    raw[_VOX_AT : _VOX_AT + 4] = np.float32(5000).tobytes()
    raw[400:408] = np.array([16, 0], "<i4").tobytes()  # the voxels read as a second extension
    _put(p, raw[:420])  # a third one would start at byte 416 and its head ends past the stream
    with pytest.raises(NiftiReadError, match=r"header extension 3 at byte 416 runs past the end of the file"):
        read_nifti(p)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_valid_extension_loads_bit_exactly(tmp_path, suffix: str) -> None:
    p = tmp_path / f"ok{suffix}"
    data = _with_extension(p)
    got = read_nifti(p)
    assert got.array.dtype == data.dtype
    np.testing.assert_array_equal(got.array, data)
    assert np.array_equal(got.affine, nib.load(str(p)).affine)
    (ext,) = got.metadata["nifti_header"]["extensions"]
    import base64

    assert ext[0] == 6 and base64.b64decode(ext[1]).rstrip(b"\x00") == _EXT_CONTENT
