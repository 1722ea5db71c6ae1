"""RTSTRUCT and DICOM-SEG label volumes: round trips through independent writers (rt-utils, highdicom)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radiobject.formats.dicom import DicomError, read_dicom_series
from radiobject.formats.dicom.rtstruct import read_rtstruct
from radiobject.formats.dicom.seg import read_dicom_seg
from tests.conftest import data_path

SERIES = ("dicom", "dicom2nifti", "siemens", "anatomical", "001")  # 256 x 256 x 4 MR


@pytest.fixture(scope="module")
def series() -> tuple[Path, object]:
    folder = data_path(*SERIES)
    return folder, read_dicom_series(folder)


def _known_masks(shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Masks in our voxel order (x=col, y=row, z): a ring with a hole, a box, a blob on 2 slices."""
    x, y = np.mgrid[: shape[0], : shape[1]]
    ring = np.zeros(shape, bool)
    r = np.hypot(x - 120, y - 130)
    ring[:, :, 1] = (r <= 40) & (r >= 15)
    box = np.zeros(shape, bool)
    box[30:60, 40:90, 2] = True
    box[30:60, 40:90, 3] = True
    blob = np.zeros(shape, bool)
    blob[:, :, 0] = np.hypot(x - 200, y - 60) <= 20
    return {"ring": ring, "box": box, "blob": blob}


def test_rtstruct_round_trip_rt_utils(series, tmp_path: Path) -> None:
    rt_utils = pytest.importorskip("rt_utils")
    folder, img = series
    masks = _known_masks(img.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rt = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(folder))
        for name, m in masks.items():
            # rt-utils masks are (rows, cols, slices), slices sorted along the normal like ours
            rt.add_roi(mask=m.transpose(1, 0, 2), name=name)
        rt.save(str(tmp_path / "rt.dcm"))
    labels, table = read_rtstruct(tmp_path / "rt.dcm", img)
    assert table == {"ring": 1, "box": 2, "blob": 3}
    np.testing.assert_array_equal(labels.affine, img.affine)
    got = np.asarray(labels.array)
    for name, m in masks.items():
        np.testing.assert_array_equal(got == table[name], m, err_msg=name)
    assert labels.metadata["warnings"] == []


def test_rtstruct_reference_by_folder_and_overlap(series, tmp_path: Path) -> None:
    rt_utils = pytest.importorskip("rt_utils")
    folder, img = series
    a = np.zeros(img.shape, bool)
    a[50:100, 50:100, 1] = True
    b = np.zeros(img.shape, bool)
    b[80:120, 80:120, 1] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rt = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(folder))
        rt.add_roi(mask=a.transpose(1, 0, 2), name="A")
        rt.add_roi(mask=b.transpose(1, 0, 2), name="B")
        rt.save(str(tmp_path / "rt.dcm"))
    labels, _ = read_rtstruct(tmp_path / "rt.dcm", folder)
    got = np.asarray(labels.array)
    np.testing.assert_array_equal(got == 2, b)
    np.testing.assert_array_equal(got == 1, a & ~b)
    assert any("overlap" in w for w in labels.metadata["warnings"])


def test_pydicom_rtstruct_sample_parses() -> None:
    """pydicom's rtstruct.dcm has no image series; rasterise it onto a synthetic grid around it."""
    from radiobject.formats.image import ImageData

    path = pydicom.data.get_testdata_file("rtstruct.dcm", download=False)
    ds = pydicom.dcmread(path, force=True)
    pts = np.concatenate(
        [np.asarray(c.ContourData, float).reshape(-1, 3) for roi in ds.ROIContourSequence for c in roi.ContourSequence]
    )
    lo = pts.min(0) - 5
    aff = np.diag([-1.0, -1.0, 1.0, 1.0])
    aff[:3, 3] = [-lo[0], -lo[1], lo[2]]
    shape = tuple(int(s) for s in np.ceil(pts.max(0) - lo + 10))
    ref = ImageData(np.zeros(shape, np.int16), aff, {})
    labels, table = read_rtstruct(path, ref)
    assert set(table) == {str(r.ROIName) for r in ds.StructureSetROISequence}
    assert np.asarray(labels.array).max() >= 1


def _data_store(name: str) -> Path:
    try:
        import data_store
    except ImportError:
        pytest.skip("pydicom-data not installed")
    p = Path(data_store.__file__).parent / "data" / name
    if not p.exists():
        p = Path(pydicom.data.get_testdata_file("CT_small.dcm", download=False)).parent / name
    if not p.exists():
        pytest.skip(f"{name} not in pydicom-data")
    return p


def test_pydicom_data_seg_files() -> None:
    labels, table = read_dicom_seg(_data_store("liver.dcm"))
    assert table == {"Liver": 1}
    assert labels.shape == (512, 512, 3) and labels.array.dtype == np.uint8
    assert 0 < int(np.asarray(labels.array).sum()) < labels.array.size
    with pytest.raises(DicomError, match="little endian"):  # highdicom parses little endian only
        read_dicom_seg(_data_store("liver_expb.dcm"))
    one, _ = read_dicom_seg(_data_store("liver_1frame.dcm"))
    assert one.shape[:2] == (512, 512)


def test_seg_round_trip_highdicom(series) -> None:
    hd = pytest.importorskip("highdicom")
    folder, img = series
    masks = _known_masks(img.shape)
    sources = sorted(
        (pydicom.dcmread(p) for p in folder.iterdir()),
        key=lambda d: float(
            np.dot(
                np.cross(
                    np.array(d.ImageOrientationPatient[:3], float),
                    np.array(d.ImageOrientationPatient[3:], float),
                ),
                np.array(d.ImagePositionPatient, float),
            )
        ),
    )
    for d in sources:  # highdicom insists on patient module attributes the test data lacks
        for kw in (
            "PatientSex",
            "PatientBirthDate",
            "PatientName",
            "PatientID",
            "AccessionNumber",
            "StudyID",
            "StudyDate",
            "StudyTime",
            "ReferringPhysicianName",
        ):
            if kw not in d:
                setattr(d, kw, "O" if kw == "PatientSex" else "")
    for_uid = pydicom.uid.generate_uid()
    for d in sources:
        d.FrameOfReferenceUID = d.get("FrameOfReferenceUID") or for_uid
        d.SliceThickness = d.get("SliceThickness") or 1.0
    # highdicom wants (frames, rows, cols, segments) in source-image order
    pixel = np.stack([masks[n].transpose(2, 1, 0) for n in ("ring", "box", "blob")], -1).astype(np.uint8)
    algo = hd.AlgorithmIdentificationSequence(name="test", version="1", family=hd.sr.CodedConcept("123", "99X", "x"))
    descs = [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=n,
            segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
            segmented_property_type=hd.sr.CodedConcept("12738006", "SCT", "Brain"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo,
        )
        for i, n in enumerate(("ring", "box", "blob"))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixel,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descs,
            series_instance_uid=hd.UID(),
            series_number=99,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="radiobject-test",
            manufacturer_model_name="t",
            software_versions="1",
            device_serial_number="1",
        )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "seg.dcm"
        seg.save_as(out)
        labels, table = read_dicom_seg(out, reference=img)
    assert table == {"ring": 1, "box": 2, "blob": 3}
    got = np.asarray(labels.array)
    for name, m in masks.items():
        np.testing.assert_array_equal(got == table[name], m, err_msg=name)
