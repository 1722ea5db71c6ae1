"""Bad or awkward input: dicom2nifti's failing/ folders, gantry tilt, gaps, junk files, truncation."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from radiobject.formats.dicom import (
    DicomError,
    MultipleSeriesError,
    SkippedSeriesError,
    discover_series,
    read_dicom_folder,
    read_dicom_series,
)
from tests.conftest import data_path
from tests.formats.dicom._util import reorient_to

DCM2NIIX = Path(sys.executable).parent / "dcm2niix"


def _ras_positions(folder: Path) -> np.ndarray:
    pos = []
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        pos.append(
            [
                -float(ds.ImagePositionPatient[0]),
                -float(ds.ImagePositionPatient[1]),
                float(ds.ImagePositionPatient[2]),
            ]
        )
    pos = np.array(pos)
    return pos[np.argsort(pos[:, 2])]


@pytest.fixture(scope="module")
def tilt_folder() -> Path:
    return data_path("dicom", "dicom2nifti", "failing", "gantrytilting", "001")


def test_gantry_tilt_raw_exact_shear(tilt_folder: Path) -> None:
    img = read_dicom_series(tilt_folder)
    assert img.metadata["gantry_tilt_deg"] == pytest.approx(14.0, abs=0.05)
    assert any("gantry tilt" in w for w in img.metadata["warnings"])
    # the sheared affine puts voxel (0, 0, k) exactly on slice k's ImagePositionPatient
    corners = np.array([img.affine @ [0, 0, k, 1] for k in range(img.shape[2])])[:, :3]
    want = _ras_positions(tilt_folder)
    order = np.argsort(corners[:, 2])
    np.testing.assert_allclose(corners[order], want, atol=1e-4)


@pytest.mark.skipif(not DCM2NIIX.exists(), reason="dcm2niix wheel not installed")
def test_gantry_tilt_resampled_matches_dcm2niix_tilt(tilt_folder: Path, tmp_path: Path) -> None:
    subprocess.run(
        [str(DCM2NIIX), "-o", str(tmp_path), "-f", "tilt", str(tilt_folder)],
        check=True,
        capture_output=True,
    )
    ref = nib.load(str(tmp_path / "tilt_Tilt_1.nii"))
    img = read_dicom_series(tilt_folder, resample_tilt=True)
    assert img.metadata["resampled"] == "tilt"
    ours, aff = reorient_to(np.asarray(img.array), img.affine, ref.affine)
    np.testing.assert_array_equal(ours, np.asanyarray(ref.dataobj))
    np.testing.assert_allclose(aff, ref.affine, atol=1e-3)


def test_missing_slice_warned_and_resampled(tmp_path: Path) -> None:
    folder = data_path("dicom", "dicom2nifti", "failing", "sliceincrement", "001")
    img = read_dicom_series(folder)
    assert img.shape[2] == 4 and not img.metadata["uniform_spacing"]
    assert any("missing slices" in w and "10.000 mm" in w for w in img.metadata["warnings"])
    assert img.metadata["slice_positions_mm"] == pytest.approx([18.1075, 23.1075, 28.1075, 38.1075], abs=1e-3)
    eq = read_dicom_series(folder, resample_gaps=True)
    assert eq.metadata["resampled"] == "gaps"
    assert eq.metadata["spacing_equalised"]["slices_in"] == 4
    # dcm2niix's rule min(ceil(range / smallest step) + 1, 2 n) in float32: 20 / 5 -> 6 slices
    assert eq.shape[2] == eq.metadata["spacing_equalised"]["slices_out"] == 6
    np.testing.assert_allclose(eq.affine[2, 2], 4.0, atol=1e-3)
    raw = np.asarray(img.array)
    for k_eq, k_raw in ((0, 0), (5, 3)):  # first and last positions are raw slices
        np.testing.assert_array_equal(np.asarray(eq.array)[:, :, k_eq], raw[:, :, k_raw])
    if DCM2NIIX.exists():
        subprocess.run(
            [str(DCM2NIIX), "-o", str(tmp_path), "-f", "t", str(folder)], check=True, capture_output=True, timeout=120
        )
        ref = nib.load(str(tmp_path / "t_Eq_1.nii"))
        ours, aff = reorient_to(np.asarray(eq.array), eq.affine, ref.affine)
        np.testing.assert_array_equal(ours, np.asanyarray(ref.dataobj))
        np.testing.assert_allclose(aff, ref.affine, atol=1e-3)


def test_tilt_and_gap_both_warned() -> None:
    folder = data_path("dicom", "dicom2nifti", "failing", "sliceincrement", "002")
    img = read_dicom_series(folder)
    text = " ".join(img.metadata["warnings"])
    assert "gantry tilt" in text and "missing slices" in text
    both = read_dicom_series(folder, resample_gaps=True, resample_tilt=True)
    assert both.metadata["resampled"] == "tilt+gaps"
    assert both.shape[2] == 5 and both.shape[1] > 512  # gap filled, rows widened for the shift
    a = both.affine
    assert abs(np.dot(np.cross(a[:3, 0], a[:3, 1]), a[:3, 2])) == pytest.approx(
        np.linalg.norm(np.cross(a[:3, 0], a[:3, 1])) * np.linalg.norm(a[:3, 2]),
        rel=1e-6,
    )  # slice axis along the normal: no shear left
    # tilt with uneven spacing has no affine without equalising: resample_tilt alone does both
    tilt_only = read_dicom_series(folder, resample_tilt=True)
    assert tilt_only.metadata["resampled"] == "tilt+gaps"
    np.testing.assert_array_equal(np.asarray(tilt_only.array), np.asarray(both.array))


def test_not_a_volume_is_single_slice_4d_with_warning() -> None:
    img = read_dicom_series(data_path("dicom", "dicom2nifti", "failing", "notavolume", "001"))
    assert img.shape == (512, 512, 1, 4)
    assert any("share one slice position" in w for w in img.metadata["warnings"])


def test_mixed_orientation_split_into_two_series() -> None:
    folder = data_path("dicom", "dicom2nifti", "failing", "sliceorientation", "001")
    with pytest.raises(MultipleSeriesError, match="orientation"):
        read_dicom_series(folder)
    res = read_dicom_folder(folder)
    assert len(res) == 2
    for info, img in res:
        assert "orientation" in info.split
        assert img.shape == (288, 288, 2)
        assert read_dicom_series(folder, series_uid=info.key).shape == (288, 288, 2)


def test_slicecount_two_slices() -> None:
    img = read_dicom_series(data_path("dicom", "dicom2nifti", "failing", "slicecount", "001"))
    assert img.shape == (256, 256, 2)


@pytest.fixture()
def messy_tree(tmp_path: Path) -> Path:
    """A copied GE anatomical series with junk, gzip, no extension, a truncated file, an RTSTRUCT."""
    src = data_path("dicom", "dicom2nifti", "ge", "anatomical", "001")
    root = tmp_path / "tree"
    files = sorted(src.iterdir())
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy(files[0], root / "a" / "slice0.dcm")
    shutil.copy(files[1], root / "a" / "b" / "noextension")
    (root / "a" / "b" / "slice2.dcm.gz").write_bytes(gzip.compress(files[2].read_bytes()))
    shutil.copy(files[3], root / "slice3")
    (root / "notes.txt").write_text("not dicom")
    (root / "Thumbs.db").write_bytes(b"\x00" * 300)
    trunc = tmp_path / "trunc"
    trunc.mkdir()
    data = files[0].read_bytes()
    (trunc / "cut.dcm").write_bytes(data[: len(data) - 5000])
    shutil.copy(pydicom.data.get_testdata_file("rtstruct.dcm", download=False), root / "rt.dcm")
    return root


def test_messy_tree(messy_tree: Path) -> None:
    ref = read_dicom_series(data_path("dicom", "dicom2nifti", "ge", "anatomical", "001"))
    img = read_dicom_series(messy_tree)
    np.testing.assert_array_equal(np.asarray(img.array), np.asarray(ref.array))
    np.testing.assert_allclose(img.affine, ref.affine)
    skipped = {Path(p).name for p, _ in discover_series(messy_tree).skipped_files}
    assert skipped == {"notes.txt", "Thumbs.db"}
    res = read_dicom_folder(messy_tree)
    kinds = sorted(type(r).__name__ for _, r in res)
    assert kinds == [
        "ImageData",
        "SkippedSeriesError",
    ]  # the RTSTRUCT is a recorded skip


def test_truncated_pixel_data_typed_error(messy_tree: Path) -> None:
    with pytest.raises(DicomError, match="cut.dcm"):
        read_dicom_series(messy_tree.parent / "trunc")


def test_only_non_image_objects() -> None:
    rt = pydicom.data.get_testdata_file("rtstruct.dcm", download=False)
    with pytest.raises(SkippedSeriesError, match="non-image"):
        read_dicom_series(rt)


def test_dicomdir_ignored() -> None:
    folder = Path(pydicom.data.get_testdata_file("CT_small.dcm", download=False)).parent / "dicomdirtests"
    disc = discover_series(folder)
    reasons = dict(disc.skipped_files)
    assert any("DICOMDIR" in r for p, r in reasons.items() if Path(p).name == "DICOMDIR")
    assert disc.series  # the files the DICOMDIR lists are still found


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DicomError, match="no DICOM images"):
        read_dicom_series(tmp_path)
