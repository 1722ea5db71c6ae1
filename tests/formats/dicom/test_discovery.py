"""Series discovery and splitting on modified copies of a real series (written to tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radiobject.formats.dicom import (
    MultipleSeriesError,
    SkippedSeriesError,
    discover_series,
    read_dicom_folder,
    read_dicom_series,
)
from tests.conftest import data_path

SRC = (
    "dicom",
    "dicom2nifti",
    "siemens",
    "anatomical",
    "001",
)  # 4 slices 256x256, uint16 MR


@pytest.fixture(scope="module")
def original():
    folder = data_path(*SRC)
    return folder, read_dicom_series(folder)


def _copy(folder: Path, dst: Path, edit=None, prefix: str = "") -> list[pydicom.Dataset]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(f)
        if edit is not None:
            edit(i, ds)
        ds.save_as(dst / f"{prefix}{i:03d}.dcm")
        out.append(ds)
    return out


def test_instance_numbers_reversed_and_names_shuffled(original, tmp_path: Path) -> None:
    folder, ref = original

    def edit(i: int, ds: pydicom.Dataset) -> None:
        ds.InstanceNumber = 100 - i

    _copy(folder, tmp_path, edit)
    for p in tmp_path.iterdir():  # file names no longer follow any order
        p.rename(p.with_name(f"z{hash(p.name) % 997}_{p.stem}"))
    img = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(np.asarray(img.array), np.asarray(ref.array))
    np.testing.assert_allclose(img.affine, ref.affine)


def test_echo_and_phase_split(original, tmp_path: Path) -> None:
    folder, _ = original

    def echo2(i: int, ds: pydicom.Dataset) -> None:
        ds.EchoNumbers = 2
        ds.SOPInstanceUID = pydicom.uid.generate_uid()

    _copy(folder, tmp_path / "e1", lambda i, ds: setattr(ds, "EchoNumbers", 1))
    _copy(folder, tmp_path / "e2", echo2)
    disc = discover_series(tmp_path)
    assert [s.split for s in disc.series] == ["echo 1 (1/2)", "echo 2 (2/2)"]
    with pytest.raises(MultipleSeriesError, match="echo"):
        read_dicom_series(tmp_path)
    res = read_dicom_folder(tmp_path)
    assert [r.shape for _, r in res] == [(256, 256, 4)] * 2


def test_localizer_skipped_with_reason(original, tmp_path: Path) -> None:
    folder, _ = original

    def loc(i: int, ds: pydicom.Dataset) -> None:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.SeriesInstanceUID = "1.2.3.4"
        ds.SOPInstanceUID = pydicom.uid.generate_uid()

    _copy(folder, tmp_path / "loc", loc)
    _copy(folder, tmp_path / "img")
    img = read_dicom_series(tmp_path)  # the only convertible series is picked
    assert img.shape == (256, 256, 4)
    res = read_dicom_folder(tmp_path)
    skipped = [(i, r) for i, r in res if isinstance(r, SkippedSeriesError)]
    assert len(skipped) == 1 and "localizer" in skipped[0][0].skipped_reason
    with pytest.raises(SkippedSeriesError, match="localizer"):
        read_dicom_series(tmp_path / "loc")


def test_varying_slopes_give_float32(original, tmp_path: Path) -> None:
    folder, ref = original
    slopes = [1.0, 0.5, 2.0, 1.25]

    def edit(i: int, ds: pydicom.Dataset) -> None:
        ds.RescaleSlope = slopes[i]
        ds.RescaleIntercept = -10

    _copy(folder, tmp_path, edit)
    img = read_dicom_series(tmp_path)
    assert img.array.dtype == np.float32 and img.metadata["rescale_varies"]
    z_order = np.argsort(
        [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[0]) for p in sorted(tmp_path.iterdir())]
    )
    raw = np.asarray(ref.array).astype(np.float64)
    got = np.asarray(img.array)
    for k in range(4):  # slice k of the volume came from the file whose slope we can identify
        cand = [np.allclose(got[:, :, k], raw[:, :, k] * s - 10, atol=1e-3) for s in slopes]
        assert any(cand)
    assert len(z_order) == 4


def test_integer_rescale_stays_integer(original, tmp_path: Path) -> None:
    folder, ref = original

    def edit(i: int, ds: pydicom.Dataset) -> None:
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024

    _copy(folder, tmp_path, edit)
    img = read_dicom_series(tmp_path)
    assert img.array.dtype == np.int16
    np.testing.assert_array_equal(np.asarray(img.array), np.asarray(ref.array).astype(np.int32) - 1024)


def test_header_fields_and_patient_opt_in(original) -> None:
    folder, img = original
    h = img.metadata["dicom"]
    for key in (
        "Modality",
        "Manufacturer",
        "SeriesInstanceUID",
        "StudyInstanceUID",
        "ImageOrientationPatient",
    ):
        assert key in h
    assert not {"PatientName", "PatientID", "PatientBirthDate"} & set(h)
    json.dumps(img.metadata)
    with_patient = read_dicom_series(folder, include_patient=True).metadata["dicom"]
    ds = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    if "PatientID" in ds:
        assert "PatientID" in with_patient


def test_list_of_files_input(original) -> None:
    folder, ref = original
    files = sorted(folder.iterdir())[::-1]
    img = read_dicom_series(files)
    np.testing.assert_array_equal(np.asarray(img.array), np.asarray(ref.array))


def test_mixed_acquisitions_split(original, tmp_path: Path) -> None:
    """A repeated partial acquisition in the same series UID is split off, not stacked as 4D."""
    folder, _ = original

    def acq2(i: int, ds: pydicom.Dataset) -> None:
        ds.AcquisitionNumber = 2
        ds.SOPInstanceUID = pydicom.uid.generate_uid()

    _copy(folder, tmp_path / "a", lambda i, ds: setattr(ds, "AcquisitionNumber", 1))
    files = sorted(folder.iterdir())[:2]
    _copy(folder, tmp_path / "b", acq2)
    for p in sorted((tmp_path / "b").iterdir())[2:]:
        p.unlink()
    assert len(files) == 2
    res = read_dicom_folder(tmp_path)
    assert sorted(r.shape[2] for _, r in res) == [2, 4]
    assert all("acquisition" in info.split for info, _ in res)


def test_is_dicom_detection(tmp_path: Path) -> None:
    from radiobject.formats.dicom import is_dicom

    assert is_dicom(data_path("dicom", "dcm_qa_nih", "In"))  # folder, recursive
    assert is_dicom(data_path("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S2010", "I10"))  # no extension
    assert is_dicom(Path(pydicom.data.get_testdata_file("zipMR.gz", download=False)))  # gzip
    assert is_dicom(Path(pydicom.data.get_testdata_file("ExplVR_LitEndNoMeta.dcm", download=False)))
    (tmp_path / "a.nii.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 200)
    (tmp_path / "notes.txt").write_text("hello")
    assert not is_dicom(tmp_path / "a.nii.gz")
    assert not is_dicom(tmp_path / "notes.txt")
    assert not is_dicom(tmp_path)
