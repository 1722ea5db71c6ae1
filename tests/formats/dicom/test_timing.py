"""DICOM 4D time spacing: RepetitionTime -> zooms[3] -> NIfTI pixdim[4] (s) and xyzt_units, as dcm2niix."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from radiobject import Volume, WriteOptions
from radiobject.formats.dicom import read_dicom_series
from radiobject.formats.dicom.timing import nifti_spacing, repetition_time_ms
from radiobject.formats.nifti import write_nifti
from tests.conftest import data_path
from tests.formats.dicom._synth import DCM2NIIX, MR_IMAGE, base_dataset, run_dcm2niix

NIH = [("20180918GE", "mr_0004", "DCM2NIIX_regression_test_4"), ("20180918Si", "mr_0003", "EPI_PE=AP_3")]


def _write_fmri(folder: Path, tr: object, *, nt: int = 3, nz: int = 4) -> None:
    """A classic single-frame 4D MR series (one file per slice and volume), oblique-free."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    for t in range(nt):
        for k in range(nz):
            ds = base_dataset(MR_IMAGE, series, study, frame)
            ds.Modality, ds.Manufacturer = "MR", "SIEMENS"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "FMRI", "NONE"]
            ds.AcquisitionNumber = ds.TemporalPositionIdentifier = t + 1
            ds.InstanceNumber = t * nz + k + 1
            if tr is not None:
                ds.RepetitionTime = tr
            ds.EchoTime = 30
            ds.ImagePositionPatient = [-60.0, -50.0, -20.0 + 3.3 * k]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing, ds.SliceThickness = [2.1, 1.9], 3.3
            ds.Rows, ds.Columns = 6, 5
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = np.full((6, 5), t * 10 + k, np.uint16).tobytes()
            ds.save_as(folder / f"IM{t}_{k}.dcm", enforce_file_format=True)


@pytest.mark.parametrize(("site", "series", "ref"), NIH)
def test_real_4d_series_exports_tr_as_pixdim4(site: str, series: str, ref: str, tmp_path: Path, backend: str) -> None:
    folder = data_path("dicom", "dcm_qa_nih", "In", site, series)
    theirs = nib.load(data_path("dicom", "dcm_qa_nih", "Ref", f"{ref}.nii")).header
    img = read_dicom_series(folder)
    tr_ms = float(img.metadata["dicom"]["RepetitionTime"])
    assert img.array.ndim == 4
    assert img.metadata["zooms"][3] == img.metadata["repetition_time_s"] == tr_ms / 1000
    assert img.metadata["zooms"][:3] == [float(v) for v in np.sqrt((img.affine[:3, :3] ** 2).sum(0))]
    vol = Volume.from_dicom(tmp_path / "v", folder, options=WriteOptions(backend=backend))
    assert vol.metadata["zooms"] == img.metadata["zooms"]
    vol.to_nifti(tmp_path / "out.nii")
    ours = nib.load(tmp_path / "out.nii").header
    assert int(ours["xyzt_units"]) == int(theirs["xyzt_units"]) == 10  # mm + sec
    assert ours["pixdim"][4] == np.float32(tr_ms / 1000)  # the float32 nearest TR in seconds
    # dcm2niix divides in float32 (2435.37 ms -> 2.4353702): at most one float32 step apart
    assert abs(float(ours["pixdim"][4]) - float(theirs["pixdim"][4])) <= float(np.spacing(np.float32(tr_ms / 1000)))
    np.testing.assert_allclose(ours.get_zooms()[:3], theirs.get_zooms()[:3], rtol=1e-6)


@pytest.mark.parametrize("tr", ["2435.37", 800, None])
def test_synthetic_4d_matches_the_dcm2niix_wheel(tr: object, tmp_path: Path) -> None:
    _write_fmri(tmp_path / "dcm", tr)
    img = read_dicom_series(tmp_path / "dcm")
    assert img.array.shape == (5, 6, 4, 3)
    write_nifti(tmp_path / "ours.nii", np.asarray(img.array), img.affine, img.metadata)
    ours = nib.load(tmp_path / "ours.nii").header
    assert ours.get_xyzt_units() == ("mm", "sec")
    expected = 0.0 if tr is None else float(tr) / 1000  # type: ignore[arg-type]
    assert ours["pixdim"][4] == np.float32(expected)
    assert img.metadata["zooms"][3] == expected
    assert ("repetition_time_s" in img.metadata) == (tr is not None)
    assert any("RepetitionTime" in w for w in img.metadata["warnings"]) == (tr is None)
    if not DCM2NIIX.exists():
        pytest.skip(f"dcm2niix wheel not installed ({DCM2NIIX})")
    (theirs,) = run_dcm2niix(tmp_path / "dcm", tmp_path / "ref").values()
    assert int(ours["xyzt_units"]) == int(theirs.header["xyzt_units"])
    step = float(np.spacing(np.float32(expected))) if expected else 0.0
    assert abs(float(ours["pixdim"][4]) - float(theirs.header["pixdim"][4])) <= step
    np.testing.assert_array_equal(ours.get_zooms()[:3], theirs.header.get_zooms()[:3])


def test_3d_series_records_spatial_zooms_only(tmp_path: Path) -> None:
    _write_fmri(tmp_path / "dcm", 800, nt=1)
    img = read_dicom_series(tmp_path / "dcm")
    assert img.array.ndim == 3
    assert img.metadata["zooms"] == [float(v) for v in np.sqrt((img.affine[:3, :3] ** 2).sum(0))]
    np.testing.assert_allclose(img.metadata["zooms"], [1.9, 2.1, 3.3], rtol=1e-12)
    assert len(img.metadata["zooms"]) == 3 and "t_units" not in img.metadata
    assert img.metadata["xyz_units"] == "mm"


def test_repetition_time_from_enhanced_functional_groups() -> None:
    timing = Dataset()
    timing.RepetitionTime = 1500
    shared = Dataset()
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    ds = Dataset()
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    assert repetition_time_ms(ds) == 1500.0
    meta, notes = nifti_spacing(ds, np.diag([2.0, 2.0, 3.0, 1.0]), 7)
    assert meta["zooms"] == [2.0, 2.0, 3.0, 1.5] and meta["t_units"] == "sec" and not notes
    ds.RepetitionTime = "0"  # a zero top-level tag falls back to the functional group
    assert repetition_time_ms(ds) == 1500.0
    assert repetition_time_ms(Dataset()) is None
