"""Geometry trial of ingest -> Volume -> NIfTI export on real files, both backends.

NIfTI: nibabel's own test files (LAS, big-endian, NIfTI-2, 4D, ``scl_slope`` functional, float
with NaN) and synthetic oblique ones (qform != sform, sform code 0, micron / msec units); the
export must reload in nibabel field for field. DICOM: the dcm2niix CT reference (units and affine).
Other sources (NumPy, TIFF, DICOM) export in mm; float16 has no NIfTI type (a typed error).
Resampling records the new grid's spacing.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path as nibabel_data

from radiobject import RadiObject, Volume, WriteOptions
from radiobject.errors import StoreError
from radiobject.model.resample import resample_collection
from tests.conftest import data_path

NIBABEL_FILES = [
    "anatomical.nii",
    "example4d.nii.gz",
    "example_nifti2.nii.gz",
    "functional.nii",
    "reoriented_anat_moved.nii",
    "resampled_anat_moved.nii",
    "standard.nii.gz",
]
HEADER_FIELDS = (
    "sform_code",
    "qform_code",
    "xyzt_units",
    "pixdim",
    "quatern_b",
    "quatern_c",
    "quatern_d",
    "qoffset_x",
    "qoffset_y",
    "qoffset_z",
    "srow_x",
    "srow_y",
    "srow_z",
    "dim",
    "intent_code",
    "slice_code",
    "dim_info",
)


def _oblique() -> np.ndarray:
    t = np.deg2rad(17.0)
    rot = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([-0.7, -1.3, 3.1])
    a[:3, 3] = [12.25, -7.5, 33.125]
    return a


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("geom_trial")
    rng = np.random.default_rng(1)
    a = _oblique()
    out = []
    for dt in ("uint8", "int16", "float64"):  # LPI-like oblique, sform code 4 vs qform code 1
        img = nib.Nifti1Image((rng.random((9, 7, 5)) * 100).astype(dt), a)
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_qform(a, code=1)
        img.header.set_sform(a, code=4)
        if dt == "int16":
            img.header.set_slope_inter(0.5, -10.0)
        out.append(root / f"oblique_{dt}.nii.gz")
        nib.save(img, out[-1])
    sheared = a.copy()
    sheared[0, 1] += 0.2  # an sform the qform cannot hold: both must come back
    img = nib.Nifti1Image(rng.random((6, 6, 6)).astype(np.float32), sheared)
    img.header.set_qform(a, code=2)
    img.header.set_sform(sheared, code=2)
    out.append(root / "qform_ne_sform.nii")
    nib.save(img, out[-1])
    img = nib.Nifti1Image(rng.random((6, 5, 4)).astype(np.float32), a)
    img.header.set_sform(None, code=0)
    img.header.set_qform(a, code=1)
    out.append(root / "qform_only.nii")
    nib.save(img, out[-1])
    img = nib.Nifti1Image(rng.random((5, 4, 3, 6)).astype(np.float32), a)
    img.header.set_xyzt_units("micron", "msec")
    img.header.set_zooms((*img.header.get_zooms()[:3], 750.0))
    out.append(root / "4d_micron_msec.nii.gz")
    nib.save(img, out[-1])
    return out


def _same_nifti(src: nib.Nifti1Image, back: nib.Nifti1Image) -> None:
    np.testing.assert_array_equal(back.affine, src.affine)
    for key in HEADER_FIELDS:
        np.testing.assert_array_equal(np.asarray(back.header[key]), np.asarray(src.header[key]), err_msg=key)
    assert back.get_data_dtype().newbyteorder("=") == src.get_data_dtype().newbyteorder("=")
    assert (back.dataobj.slope, back.dataobj.inter) == (src.dataobj.slope, src.dataobj.inter)
    raw = np.asarray(src.dataobj.get_unscaled())
    np.testing.assert_array_equal(np.asarray(back.dataobj.get_unscaled()), raw)


@pytest.mark.parametrize("name", NIBABEL_FILES + ["synthetic"])
def test_nifti_ingest_and_export_keep_the_geometry_bit_for_bit(
    name: str, synthetic: list[Path], backend: str, tmp_path: Path
) -> None:
    paths = [Path(nibabel_data) / name] if name != "synthetic" else synthetic
    for k, path in enumerate(paths):
        src = nib.load(path)
        vol = Volume(Volume.from_nifti(tmp_path / f"v{k}", path, options=WriteOptions(backend=backend)).uri)
        np.testing.assert_array_equal(vol.affine, src.affine)
        assert vol.affine.dtype == np.float64
        assert vol.shape == src.shape and vol.dtype == src.get_data_dtype().newbyteorder("=")
        assert vol.orientation == "".join(nib.aff2axcodes(src.affine))
        np.testing.assert_allclose(vol.spacing, np.sqrt((src.affine[:3, :3] ** 2).sum(axis=0)), rtol=0, atol=0)
        np.testing.assert_array_equal(vol.to_numpy(), np.asarray(src.dataobj.get_unscaled()))
        for ext in (".nii", ".nii.gz"):
            vol.to_nifti(tmp_path / f"out{k}{ext}")
            _same_nifti(src, nib.load(tmp_path / f"out{k}{ext}"))


def test_the_export_command_keeps_the_geometry(synthetic: list[Path], backend: str, tmp_path: Path) -> None:
    from radiobject.cli.main import main

    store = RadiObject.from_niftis(
        str(tmp_path / "store"), {"ct": [str(synthetic[1])]}, options=WriteOptions(backend=backend)
    )
    assert main(["export", store.uri, str(tmp_path / "out")]) == 0
    (exported,) = (tmp_path / "out" / "ct").glob("*.nii.gz")
    _same_nifti(nib.load(synthetic[1]), nib.load(exported))


def test_a_volume_from_numpy_or_tiff_exports_in_millimetres(backend: str, tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    affine = np.array([[0, 0, -1.5, 10], [0.75, 0, 0, -5], [0, 2.5, 0, 7.25], [0, 0, 0, 1.0]])
    vol = Volume.from_numpy(
        tmp_path / "np", np.arange(60, dtype=np.int16).reshape(5, 4, 3), affine, options=WriteOptions(backend=backend)
    )
    vol.to_nifti(tmp_path / "np.nii")
    back = nib.load(tmp_path / "np.nii")
    assert back.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_array_equal(back.affine, affine)  # exact in float32
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0}
    for k in "XYZ":
        meta[f"PhysicalSize{k}Unit"] = "mm"
    tifffile.imwrite(tmp_path / "a.ome.tif", np.zeros((3, 8, 6), np.uint16), metadata=meta, ome=True)
    tif = Volume.from_tiff(tmp_path / "tif", tmp_path / "a.ome.tif", options=WriteOptions(backend=backend))
    assert tif.spacing == (0.25, 0.5, 2.0) and tif.shape == (6, 8, 3)
    tif.to_nifti(tmp_path / "tif.nii.gz")
    back = nib.load(tmp_path / "tif.nii.gz")
    assert back.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_array_equal(back.affine, tif.affine)


def test_float16_has_no_nifti_type_and_export_says_so(tmp_path: Path) -> None:
    vol = Volume.from_numpy(tmp_path / "h", np.ones((4, 3, 2), np.float16), options=WriteOptions(backend="zarr"))
    assert vol.dtype == np.float16
    with pytest.raises(StoreError, match="float16"):
        vol.to_nifti(tmp_path / "h.nii")
    assert not (tmp_path / "h.nii").exists()


def test_dicom_ct_exports_with_the_reference_geometry_and_mm(backend: str, tmp_path: Path) -> None:
    folder = data_path("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S2010")
    ref = nib.load(data_path("dicom", "dcm_qa_ct", "Ref", "1A_TRAUMA_PLAIN_HEAD_DM_Head_201.nii"))
    vol = Volume.from_dicom(tmp_path / "ct", folder, options=WriteOptions(backend=backend))
    vol.to_nifti(tmp_path / "ct.nii.gz")
    back = nib.load(tmp_path / "ct.nii.gz")
    assert back.header.get_xyzt_units()[0] == ref.header.get_xyzt_units()[0] == "mm"
    ours, theirs = nib.as_closest_canonical(back), nib.as_closest_canonical(ref)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    np.testing.assert_allclose(back.affine, vol.affine, atol=5e-5)  # NIfTI-1 stores float32 rows


def test_resampled_volumes_record_the_new_spacing(synthetic: list[Path], backend: str, tmp_path: Path) -> None:
    radi = RadiObject.from_niftis(
        str(tmp_path / "store"), {"ct": [str(synthetic[1])]}, options=WriteOptions(backend=backend)
    )
    vol = resample_collection(radi, "ct", (1.0, 2.0, 1.5)).volume(radi["ct"].obs_ids[0])
    np.testing.assert_allclose(vol.spacing, (1.0, 2.0, 1.5), atol=1e-12)
    np.testing.assert_allclose(vol.metadata["zooms"], (1.0, 2.0, 1.5), atol=1e-12)
    src = radi["ct"].volume(radi["ct"].obs_ids[0])
    corner = np.array([-0.5, -0.5, -0.5, 1.0])  # the outer voxel edge stays where it was
    np.testing.assert_allclose(vol.affine @ corner, src.affine @ corner, atol=1e-9)
    vol.to_nifti(tmp_path / "r.nii")
    back = nib.load(tmp_path / "r.nii")
    np.testing.assert_allclose(back.header.get_zooms()[:3], (1.0, 2.0, 1.5), atol=1e-6)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
