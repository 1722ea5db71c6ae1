"""Decoding: compressed vs uncompressed pairs from pydicom / pydicom-data, LUT, dtype, decoders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.pixels import get_decoder

from radiobject.formats.dicom import (
    MissingDecoderError,
    apply_modality_lut,
    read_dicom_series,
)
from radiobject.formats.dicom.decode import decode_pixels
from radiobject.formats.dicom.discover import read_header
from tests.conftest import data_path
from tests.formats.dicom._util import reorient_to

TEST_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm", download=False)).parent
try:
    import data_store  # the pydicom-data package

    DATA_STORE: Path | None = Path(data_store.__file__).parent / "data"
except ImportError:  # pragma: no cover
    DATA_STORE = None

PAIRS = {  # uncompressed original -> lossless / other-syntax copies
    "MR_small.dcm": [
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_padded.dcm",
    ],
    "emri_small.dcm": [
        "emri_small_RLE.dcm",
        "emri_small_big_endian.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
    ],
    "liver_1frame.dcm": ["liver_expb_1frame.dcm"],
    "rtdose.dcm": ["rtdose_expb.dcm", "rtdose_rle.dcm"],
    "rtdose_1frame.dcm": ["rtdose_rle_1frame.dcm", "rtdose_expb_1frame.dcm"],
    "693_UNCR.dcm": ["693_J2KR.dcm"],
    "MR2_UNCR.dcm": ["MR2_J2KR.dcm"],
    "US1_UNCR.dcm": ["US1_J2KR.dcm"],
    "OBXXXX1A_2frame.dcm": ["OBXXXX1A_rle_2frame.dcm", "OBXXXX1A_expb_2frame.dcm"],
    "SC_rgb.dcm": ["SC_rgb_rle.dcm", "SC_rgb_expb.dcm"],
    "SC_rgb_16bit_2frame.dcm": [
        "SC_rgb_rle_16bit_2frame.dcm",
        "SC_rgb_expb_16bit_2frame.dcm",
    ],
    "SC_rgb_32bit_2frame.dcm": [
        "SC_rgb_rle_32bit_2frame.dcm",
        "SC_rgb_expb_32bit_2frame.dcm",
    ],
    "JPEG2000_UNC.dcm": ["JPEG2000.dcm"],
    "SC_rgb_gdcm2k_uncompressed.dcm": ["SC_rgb_gdcm_KY.dcm"],
}
SLOW_PAIRS = {"RG1_UNCR.dcm": ["RG1_J2KR.dcm"], "RG3_UNCR.dcm": ["RG3_J2KR.dcm"]}


def _file(name: str) -> Path:
    for base in (TEST_FILES, DATA_STORE):
        if base is not None and (base / name).exists():
            return base / name
    pytest.skip(f"{name} not installed (pydicom test files / pydicom-data)")


def _decode(name: str, backend: str = "auto") -> np.ndarray:
    p = _file(name)
    return decode_pixels(read_header(p), str(p), backend=backend)


@pytest.mark.parametrize(("orig", "other"), [(a, b) for a, bs in PAIRS.items() for b in bs])
def test_pairs_decode_identically(orig: str, other: str) -> None:
    a, b = _decode(orig), _decode(other)
    assert a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize(("orig", "other"), [(a, b) for a, bs in SLOW_PAIRS.items() for b in bs])
def test_large_pairs_decode_identically(orig: str, other: str) -> None:
    np.testing.assert_array_equal(_decode(orig), _decode(other))


def test_mr_small_series_all_syntaxes_same_volume() -> None:
    ref = read_dicom_series(_file("MR_small.dcm"))
    for name in PAIRS["MR_small.dcm"]:
        img = read_dicom_series(_file(name))
        np.testing.assert_array_equal(np.asarray(img.array), np.asarray(ref.array))
        np.testing.assert_allclose(img.affine, ref.affine)
        assert img.array.dtype.isnative


def test_gzip_file() -> None:
    img = read_dicom_series(_file("zipMR.gz"))
    np.testing.assert_array_equal(
        np.asarray(img.array),
        np.asarray(read_dicom_series(_file("MR_small.dcm")).array),
    )


@pytest.mark.parametrize(
    "name",
    [
        "JPEG-LL.dcm",
        "JPGLosslessP14SV1_1s_1f_8b.dcm",
        "JPEGLSNearLossless_16.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "GDCMJ2K_TextGBR.dcm",
        "J2K_pixelrep_mismatch.dcm",
    ],
)
def test_imagecodecs_fallback_equals_pydicom_plugin(name: str) -> None:
    pytest.importorskip("libjpeg", reason="the reference decoder pylibjpeg-libjpeg (test extra) is not installed")
    np.testing.assert_array_equal(_decode(name, "imagecodecs"), _decode(name, "pydicom"))


def test_imagecodecs_fallback_dcm_qa_ts() -> None:
    pytest.importorskip("libjpeg", reason="the reference decoder pylibjpeg-libjpeg (test extra) is not installed")
    for i in range(4, 10):
        p = data_path("dicom", "dcm_qa_ts", "In", f"{i}.dcm")
        ds = read_header(p)
        np.testing.assert_array_equal(
            decode_pixels(ds, backend="imagecodecs"),
            decode_pixels(ds, backend="pydicom"),
        )


@pytest.fixture()
def no_jpeg_lossless_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend no pydicom plugin for JPEG lossless SV1 is installed."""
    dec = get_decoder(pydicom.uid.JPEGLosslessSV1)
    monkeypatch.setattr(dec, "_available", {})
    monkeypatch.setattr(
        dec,
        "_unavailable",
        {"gdcm": ("gdcm>=3.0.10",), "pylibjpeg": ("pylibjpeg-libjpeg",)},
    )


def test_missing_decoder_typed_error(no_jpeg_lossless_plugins: None) -> None:
    p = data_path("dicom", "dcm_qa_ts", "In", "5.dcm")
    with pytest.raises(MissingDecoderError, match="python-gdcm"):
        read_dicom_series(p, decoder="pydicom")
    img = read_dicom_series(p)  # auto: falls back to imagecodecs (BSD), same voxels
    np.testing.assert_array_equal(
        np.asarray(img.array),
        np.asarray(read_dicom_series(data_path("dicom", "dcm_qa_ts", "In", "1.dcm")).array),
    )


def test_modality_lut_dtypes() -> None:
    raw = np.array([[0, 4095]], dtype=np.uint16).reshape(1, 1, 2)
    v, _ = apply_modality_lut(raw, [1.0], [-1024.0], 2)
    assert v.dtype == np.int16 and v.tolist() == [[[-1024, 3071]]]
    v, _ = apply_modality_lut(raw, [1.0], [0.0], 2)
    assert v.dtype == np.uint16
    v, _ = apply_modality_lut(np.array([[[0, 60000]]], dtype=np.uint16), [1.0], [-1024.0], 2)
    assert v.dtype == np.int32 and v.max() == 58976
    two = np.ones((2, 1, 2), dtype=np.int16)
    v, info = apply_modality_lut(two, [1.0, 2.5], [0.0, 0.0], 2)
    assert v.dtype == np.float32 and info["rescale_varies"] and v[1, 0, 0] == 2.5
    v, _ = apply_modality_lut(np.array([[[1]]], dtype=np.uint8), [1.0], [0.0], 1)
    assert v.dtype == np.uint8


def test_signed_bits_stored_below_allocated() -> None:
    """12-bit signed samples in 16-bit words: sign-extended by the decoder."""
    ds = read_header(_file("MR_small.dcm"))
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 1
    raw = np.frombuffer(ds.PixelData, dtype="<u2").reshape(64, 64) & 0x0FFF
    ds.PixelData = (raw | np.where(raw == raw.max(), 0xF000, 0)).astype("<u2").tobytes()
    arr = decode_pixels(ds)
    want = np.where(raw >= 2048, raw.astype(np.int32) - 4096, raw)
    np.testing.assert_array_equal(arr, want)


DCM2NIIX = Path(sys.executable).parent / "dcm2niix"


@pytest.mark.skipif(not DCM2NIIX.exists(), reason="dcm2niix wheel not installed")
def test_enhanced_ct_vs_dcm2niix(tmp_path: Path) -> None:
    src = _file("eCT_Supplemental.dcm")
    folder = tmp_path / "in"
    folder.mkdir()
    os.symlink(src, folder / "ect.dcm")
    subprocess.run(
        [str(DCM2NIIX), "-o", str(tmp_path), "-f", "ect", str(folder)],
        check=True,
        capture_output=True,
    )
    ref = nib.load(str(tmp_path / "ect.nii"))
    img = read_dicom_series(src)
    ours, aff = reorient_to(np.asarray(img.array), img.affine, ref.affine)
    np.testing.assert_array_equal(ours, np.asanyarray(ref.dataobj))
    np.testing.assert_allclose(aff, ref.affine, atol=1e-3)


@pytest.fixture()
def without_pylibjpeg_libjpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the GPLv3 pylibjpeg-libjpeg plugin from every JPEG / JPEG-LS decoder."""
    for ts in (
        pydicom.uid.JPEGBaseline8Bit,
        pydicom.uid.JPEGExtended12Bit,
        pydicom.uid.JPEGLossless,
        pydicom.uid.JPEGLosslessSV1,
        pydicom.uid.JPEGLSLossless,
        pydicom.uid.JPEGLSNearLossless,
    ):
        dec = get_decoder(ts)
        monkeypatch.setattr(
            dec,
            "_available",
            {k: v for k, v in dec._available.items() if k != "pylibjpeg"},
        )


def test_all_syntaxes_without_gpl_decoder(without_pylibjpeg_libjpeg: None) -> None:
    """Our chosen non-GPL stack (pyjpegls, pylibjpeg-openjpeg, imagecodecs) reads every dcm_qa_ts file."""
    from tests.formats.dicom._util import assert_matches_reference

    for i in range(1, 10):
        img = read_dicom_series(data_path("dicom", "dcm_qa_ts", "In", f"{i}.dcm"))
        assert_matches_reference(img, data_path("dicom", "dcm_qa_ts", "Ref", f"{i}.nii"))


def test_native_fast_path_equals_pydicom() -> None:
    """Uncompressed data is decoded with numpy; it must equal pydicom's pixel_array exactly."""
    from radiobject.formats.dicom.decode import _decode_native
    from radiobject.formats.dicom.discover import iter_files

    files = [
        str(_file(n))
        for n in (
            "MR_small.dcm",
            "MR_small_bigendian.dcm",
            "MR_small_implicit.dcm",
            "CT_small.dcm",
            "rtdose.dcm",
            "emri_small_big_endian.dcm",
            "OBXXXX1A_2frame.dcm",
        )
    ]
    files += iter_files(data_path("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S2010"))[:5]
    files += [str(data_path("dicom", "dcm_qa_ts", "In", f"{i}.dcm")) for i in (1, 2, 3)]
    checked = 0
    for f in files:
        try:
            ds = read_header(f)
        except Exception:  # noqa: BLE001, S112 - the DIRFILE in dcm_qa_ct
            continue
        fast = _decode_native(ds)
        assert fast is not None, f
        ref = ds.pixel_array
        assert fast.dtype == ref.dtype.newbyteorder("=") and fast.dtype.isnative, f
        np.testing.assert_array_equal(fast, ref, err_msg=f)
        checked += 1
    assert checked >= 12
