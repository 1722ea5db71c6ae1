"""Our reader vs third-party reference conversions (dcm2niix, dicom2nifti) of real scanner data."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject.formats.dicom import DicomError, read_dicom_folder, read_dicom_series
from tests.conftest import SHARED_DATA, data_path
from tests.formats.dicom._util import assert_matches_reference

D2N = SHARED_DATA / "dicom" / "dicom2nifti"
#: dicom2nifti folders whose ground truth is not a plain conversion (checked in test_failing.py)
D2N_SPECIAL = {"failing/sliceincrement/002"}  # dicom2nifti's own tilt resampling (512x514x5)


def _d2n_cases() -> list[str]:
    if not D2N.is_dir():
        return ["<absent>"]
    return sorted(
        str(p.relative_to(D2N)).replace("_ground_truth.nii.gz", "") for p in D2N.rglob("*_ground_truth.nii.gz")
    )


@pytest.mark.parametrize("case", _d2n_cases())
def test_dicom2nifti_ground_truth(case: str) -> None:
    folder = data_path("dicom", "dicom2nifti", case)
    gt = Path(str(folder) + "_ground_truth.nii.gz")
    if case in D2N_SPECIAL:
        _check_resampled_ground_truth(folder, gt)
        return
    img = read_dicom_series(folder)
    assert_matches_reference(img, gt)
    json.dumps(img.metadata)


def _check_resampled_ground_truth(folder: Path, gt_path: Path) -> None:
    """Tilted CT with a missing slice: dicom2nifti resampled it onto its own orthogonal grid.

    Voxel equality is impossible (other grid, other interpolation), so our raw slices (gap filled
    with ``resample_gaps``) are interpolated at dicom2nifti's voxel centres through our exact
    sheared affine: a wrong affine (e.g. the shear dropped) would not line up.
    """
    from scipy.ndimage import map_coordinates

    img = read_dicom_series(folder, resample_gaps=True)
    assert img.metadata["resampled"] == "gaps" and img.metadata["gantry_tilt_deg"] > 10
    gt = nib.load(str(gt_path))
    ref = np.asanyarray(gt.dataobj).astype(np.float64).reshape(-1)
    ijk = np.indices(gt.shape).reshape(3, -1)
    world = gt.affine @ np.r_[ijk, np.ones((1, ijk.shape[1]))]
    ours = np.asarray(img.array).astype(np.float64)

    def sample(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vox = np.linalg.inv(affine) @ world
        vals = map_coordinates(ours, vox[:3], order=1, mode="constant", cval=np.nan)
        inside = ~np.isnan(vals)
        return vals[inside], ref[inside]

    vals, want = sample(img.affine)
    assert vals.size > 0.5 * ref.size
    assert np.percentile(np.abs(vals - want), 99) < 1.5  # int16 rounding + interpolation
    assert np.corrcoef(vals, want)[0, 1] > 0.9999
    unsheared = img.affine.copy()  # control: without the shear the volumes do not line up
    n = np.cross(unsheared[:3, 0], unsheared[:3, 1])
    n /= np.linalg.norm(n)
    unsheared[:3, 2] = n * (unsheared[:3, 2] @ n)
    vals, want = sample(unsheared)
    assert np.corrcoef(vals, want)[0, 1] < 0.9


@pytest.fixture(scope="module")
def nih() -> list:
    return list(read_dicom_folder(data_path("dicom", "dcm_qa_nih", "In")))


def _nih_ref(info) -> Path:
    refs = data_path("dicom", "dcm_qa_nih", "Ref")
    ds = info.first
    for js in refs.glob("*.json"):
        meta = json.loads(js.read_text())
        if (
            meta.get("SeriesNumber") == int(ds.SeriesNumber)
            and meta.get("Manufacturer", "").lower()[:2] == str(ds.Manufacturer).lower()[:2]
        ):
            return js.with_suffix(".nii")
    raise AssertionError(f"no reference for series {ds.SeriesNumber}")


def test_dcm_qa_nih_all_series(nih: list) -> None:
    """4 GE single-slice 4D EPI series and 4 Siemens mosaic 4D series, each vs dcm2niix."""
    manufacturers = []
    for info, img in nih:
        assert not isinstance(img, DicomError), img
        assert_matches_reference(img, _nih_ref(info))
        manufacturers.append(str(info.first.Manufacturer)[:2].upper())
    assert sorted(manufacturers) == ["GE"] * 4 + ["SI"] * 4


def test_dcm_qa_nih_skipped_files_recorded(nih) -> None:
    res = read_dicom_folder(data_path("dicom", "dcm_qa_nih", "In", "20180918Si", "mr_0003"))
    assert any(p.endswith("README-Series.txt") for p, _ in res.skipped_files)


@pytest.fixture(scope="module")
def ts_images() -> dict[int, object]:
    return {i: read_dicom_series(data_path("dicom", "dcm_qa_ts", "In", f"{i}.dcm")) for i in range(1, 10)}


def test_dcm_qa_ts_nine_syntaxes_identical(ts_images) -> None:
    first = np.asarray(ts_images[1].array)
    syntaxes = set()
    for i, img in ts_images.items():
        np.testing.assert_array_equal(np.asarray(img.array), first, err_msg=f"{i}.dcm")
        np.testing.assert_array_equal(img.affine, ts_images[1].affine)
        syntaxes.add(img.metadata["transfer_syntax"])
    assert len(syntaxes) == 7  # 3 of the 9 files are JPEG-LS variants (README)


@pytest.mark.parametrize("i", range(1, 10))
def test_dcm_qa_ts_vs_reference(ts_images, i: int) -> None:
    assert_matches_reference(ts_images[i], data_path("dicom", "dcm_qa_ts", "Ref", f"{i}.nii"))


def test_dcm_qa_ct_s2010() -> None:
    img = read_dicom_series(data_path("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S2010"))
    assert img.array.dtype == np.int16  # HU after the modality LUT
    assert_matches_reference(
        img,
        data_path("dicom", "dcm_qa_ct", "Ref", "1A_TRAUMA_PLAIN_HEAD_DM_Head_201.nii"),
    )
    assert img.metadata["dicom"]["Modality"] == "CT"
    assert "PatientName" not in img.metadata["dicom"]
    assert img.metadata["rescale_intercept"] == -1024.0
