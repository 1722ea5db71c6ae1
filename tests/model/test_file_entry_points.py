"""The store entry points over the DICOM reader: Volume / VolumeCollection / RadiObject.from_dicom(s)."""

from __future__ import annotations

import numpy as np

from radiobject import RadiObject, Volume, VolumeCollection, WriteOptions
from radiobject.formats.dicom import read_dicom_series
from tests.conftest import data_path


def test_volume_from_dicom_matches_reader(backend: str, tmp_path) -> None:
    folder = data_path("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S2010")
    ref = read_dicom_series(folder)
    vol = Volume.from_dicom(str(tmp_path / "ct"), folder, options=WriteOptions(backend=backend))
    np.testing.assert_array_equal(Volume(str(tmp_path / "ct")).to_numpy(), np.asarray(ref.array))
    assert vol.dtype == np.asarray(ref.array).dtype and np.array_equal(vol.affine, ref.affine)
    assert vol.metadata["dicom"]["Modality"] == "CT"


def test_collection_and_radi_object_from_dicoms(backend: str, tmp_path) -> None:
    root = data_path("dicom", "dcm_qa_nih", "In", "20180918GE")
    coll = VolumeCollection.from_dicoms(
        str(tmp_path / "c"), str(root / "mr_000[45]"), options=WriteOptions(backend=backend)
    )
    assert coll.obs_ids == ["mr_0004", "mr_0005"]
    radi = RadiObject.from_dicoms(
        str(tmp_path / "r"),
        {"bold": str(root / "mr_000[67]")},
        subject_pattern=r"(mr_\d+)",
        options=WriteOptions(backend=backend),
    )
    assert radi.obs_subject_ids == ["mr_0006", "mr_0007"]
    ref = read_dicom_series(root / "mr_0006")
    v = radi.bold.loc["mr_0006"]
    assert v.shape == (64, 64, 15, 10)
    np.testing.assert_array_equal(v.to_numpy(), np.asarray(ref.array))
    assert np.array_equal(v.affine, ref.affine)


def test_collection_from_tiffs(backend: str, tmp_path) -> None:
    from radiobject import VolumeCollection
    from radiobject.formats.tiff import read_tiff

    folder = data_path("tiff", "openslide")
    coll = VolumeCollection.from_tiffs(
        str(tmp_path / "t"), str(folder / "boxes.tiff"), options=WriteOptions(backend=backend)
    )
    assert coll.obs_ids == ["boxes"]
    ref = read_tiff(folder / "boxes.tiff")
    np.testing.assert_array_equal(coll.loc["boxes"].to_numpy(), np.asarray(ref.array[...]))
    assert np.array_equal(coll.loc["boxes"].affine, ref.affine)


def test_radi_object_from_files_detects_formats(tmp_path) -> None:
    """NIfTI, a DICOM series folder and a TIFF in one call; the format comes from the content."""
    import nibabel as nib

    from radiobject import RadiObject

    ct = data_path("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S2010")
    (tmp_path / "in" / "s1").mkdir(parents=True)
    nib.save(
        nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4)), tmp_path / "in" / "s1" / "t1.nii.gz"
    )
    radi = RadiObject.from_files(
        str(tmp_path / "r"),
        {
            "T1w": str(tmp_path / "in" / "*" / "t1.nii.gz"),
            "CT": [str(ct)],
            "slide": [str(data_path("tiff", "openslide", "boxes.tiff"))],
        },
        validate_alignment=False,
    )
    assert radi.collection_names == ["CT", "T1w", "slide"]
    assert radi.T1w.loc["s1"].dtype == np.int16
    np.testing.assert_array_equal(radi.CT.loc["S2010"].to_numpy(), np.asarray(read_dicom_series(ct).array))
    assert radi.slide.loc["boxes"].shape[:2] == (300, 250)


def test_collection_from_files_mixed(tmp_path) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((2, 3, 4), np.uint8), np.eye(4)), tmp_path / "a.nii")
    coll = VolumeCollection.from_files(
        str(tmp_path / "c"), [str(tmp_path / "a.nii"), str(data_path("tiff", "openslide", "boxes.tiff"))]
    )
    assert coll.obs_ids == ["a", "boxes"] and coll.loc["a"].dtype == np.uint8
