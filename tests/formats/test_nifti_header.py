"""NIfTI header fidelity: a NIfTI ingested into a store and exported again (Python and CLI) has
every header field of its source, compared with nibabel's raw header, and its voxels bit for bit."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from radiobject import Volume, WriteOptions
from radiobject.cli.main import main
from radiobject.formats.nifti import read_nifti, write_nifti
from radiobject.formats.nifti_header import HEADER_KEY, build_header, derived_metadata
from radiobject.model.radi_object import RadiObject

SHIPPED = [
    "example4d.nii.gz",
    "anatomical.nii",
    "standard.nii.gz",
    "example_nifti2.nii.gz",
    "functional.nii",
    "reoriented_anat_moved.nii",
]


def raw_header(path: str | os.PathLike[str]) -> nib.Nifti1Header:
    """The header as stored in the file (raw scaling, extensions), NIfTI-1 or -2 by sizeof_hdr."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    size = {int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")}
    cls = nib.Nifti2Header if 540 in size else nib.Nifti1Header
    return cls.from_fileobj(io.BytesIO(data))


def _same(a: object, b: object) -> bool:
    x, y = np.asarray(a), np.asarray(b)
    same_type = x.dtype.newbyteorder("=") == y.dtype.newbyteorder("=")  # byte order: written native
    return same_type and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")


def assert_same_header(src: str | os.PathLike[str], out: str | os.PathLike[str], *, skip: tuple[str, ...] = ()) -> None:
    a, b = raw_header(src), raw_header(out)
    assert type(a) is type(b)
    diffs = {k: (a[k], b[k]) for k in a.keys() if k not in skip and not _same(a[k], b[k])}
    assert not diffs, f"{os.path.basename(str(src))}: fields differ {diffs}"
    assert [(e.get_code(), e.content) for e in a.extensions] == [(e.get_code(), e.content) for e in b.extensions]


def assert_same_voxels(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    x = np.asarray(nib.load(src).dataobj.get_unscaled())
    y = np.asarray(nib.load(out).dataobj.get_unscaled())
    assert x.dtype.newbyteorder("=") == y.dtype and x.shape == y.shape
    assert x.astype(y.dtype).tobytes() == y.tobytes()  # bit for bit (NaN payloads included)


def odd_nifti(path: Path, *, nifti2: bool = False, dtype: str = "float32", scaled: bool = True) -> Path:
    """A 4D NIfTI with unusual codes: sform_code 4 / qform_code 1, a qform that differs from the
    sform (a rotation and a shear), mm + ms units, TR, slice timing, intent, cal, texts, extension."""
    rng = np.random.default_rng(3)
    data = (rng.normal(size=(7, 6, 5, 3)) * 100).astype(dtype)
    if dtype.startswith("float"):
        data[0, 0, 0, 0] = np.nan
    sform = np.array([[-0.9, 0.1, 0.05, 30.5], [0.12, 1.1, -0.2, -40.25], [0.0, 0.3, 2.5, 12.0], [0, 0, 0, 1]])
    c, s = np.cos(0.3), np.sin(0.3)
    qform = np.array([[0.8 * c, -1.2 * s, 0, -10], [0.8 * s, 1.2 * c, 0, 20.0], [0, 0, -2.4, 5.5], [0, 0, 0, 1]])
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    img = cls(data, sform)
    h = img.header
    img.set_sform(sform, code=4)
    img.set_qform(qform, code=1)
    h.set_xyzt_units("mm", "msec")
    h["pixdim"][4] = 1500.0
    h.set_dim_info(freq=1, phase=0, slice=2)
    h["slice_code"], h["slice_start"], h["slice_end"], h["slice_duration"] = 3, 1, 3, 0.042
    h.set_intent("t test", (12.0,), name="stat")
    h["cal_min"], h["cal_max"], h["toffset"] = -50.0, 250.0, 3.25
    h["descrip"], h["aux_file"] = b"odd\x00 header", b"aux.txt"
    h.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment extension"))
    if scaled:
        h.set_slope_inter(2.0, -1.0)
    img.set_data_dtype(np.dtype(dtype))
    nib.save(img, path)
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_niftis_round_trip_field_for_field(name: str, backend: str, tmp_path: Path) -> None:
    src = os.path.join(data_path, name)
    Volume.from_nifti(str(tmp_path / "v"), src, options=WriteOptions(backend=backend))
    vol = Volume(str(tmp_path / "v"))
    for out in (tmp_path / "o.nii", tmp_path / "o.nii.gz"):
        vol.to_nifti(out)
        assert_same_header(src, out)
        assert_same_voxels(src, out)


@pytest.mark.parametrize("nifti2", [False, True], ids=["nifti1", "nifti2"])
@pytest.mark.parametrize("dtype", ["float32", "int16", "uint8", "float64"])
def test_odd_codes_round_trip_through_the_store(nifti2: bool, dtype: str, backend: str, tmp_path: Path) -> None:
    src = odd_nifti(
        tmp_path / ("odd.nii.gz" if nifti2 else "odd.nii"), nifti2=nifti2, dtype=dtype, scaled=dtype != "float64"
    )
    ref = raw_header(src)
    assert ref["sform_code"] == 4 and ref["qform_code"] == 1
    assert not np.allclose(ref.get_qform(), ref.get_sform())
    Volume.from_nifti(str(tmp_path / "v"), src, options=WriteOptions(backend=backend))
    vol = Volume(str(tmp_path / "v"))
    json.dumps(vol.metadata, allow_nan=False)  # strict JSON: NaN scaling fields are encoded
    assert vol.metadata[HEADER_KEY]["version"] == (2 if nifti2 else 1)
    vol.to_nifti(tmp_path / "out.nii.gz")
    assert_same_header(src, tmp_path / "out.nii.gz")
    assert_same_voxels(src, tmp_path / "out.nii.gz")
    back = nib.load(tmp_path / "out.nii.gz")
    assert back.header.get_xyzt_units() == ("mm", "msec") and back.header.get_zooms()[3] == 1500.0
    np.testing.assert_array_equal(back.header.get_qform(), ref.get_qform())


def test_cli_export_equals_source_headers(backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(2):
        odd_nifti(raw / f"sub-0{i}.nii.gz")
    uri = str(tmp_path / "store")
    RadiObject.from_niftis(uri, {"bold": str(raw / "*.nii.gz")}, options=WriteOptions(backend=backend))
    assert main(["export", uri, str(tmp_path / "e"), "--format", "nifti"]) == 0
    assert main(["export", uri, str(tmp_path / "u"), "--format", "nifti", "--uncompressed"]) == 0
    capsys.readouterr()
    for i in range(2):
        for out in (tmp_path / "e" / "bold" / f"sub-0{i}.nii.gz", tmp_path / "u" / "bold" / f"sub-0{i}.nii"):
            assert_same_header(raw / f"sub-0{i}.nii.gz", out)
            assert_same_voxels(raw / f"sub-0{i}.nii.gz", out)


def test_reoriented_volume_keeps_codes_and_units_not_axis_fields(tmp_path: Path) -> None:
    src = odd_nifti(tmp_path / "odd.nii")
    img = read_nifti(src, reorient=True)
    assert img.metadata["original_orientation"] != "RAS"
    write_nifti(tmp_path / "ras.nii", img.array, img.affine, img.metadata)
    ref, out = raw_header(src), raw_header(tmp_path / "ras.nii")
    back = nib.load(tmp_path / "ras.nii")
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-5)  # the stored (RAS) geometry, not the source's
    assert (int(out["sform_code"]), int(out["qform_code"])) == (4, 1)
    assert out.get_xyzt_units() == ("mm", "msec") and float(out["pixdim"][4]) == 1500.0
    assert int(out["dim_info"]) == 0 and int(out["slice_end"]) == 0  # axis-naming fields dropped
    for key in (
        "intent_code",
        "intent_p1",
        "intent_name",
        "cal_min",
        "cal_max",
        "toffset",
        "descrip",
        "aux_file",
        "scl_slope",
        "scl_inter",
    ):
        assert _same(ref[key], out[key]), key


def test_changed_geometry_or_scaling_is_not_overwritten_by_the_capture(tmp_path: Path) -> None:
    img = read_nifti(odd_nifti(tmp_path / "odd.nii"))
    moved = img.affine.copy()
    moved[:3, 3] += 5.0
    h = build_header(img.array, moved, img.metadata)
    np.testing.assert_allclose(h.get_best_affine(), moved, atol=1e-5)
    assert (int(h["sform_code"]), int(h["qform_code"])) == (4, 1)
    meta = dict(img.metadata, scl_slope=4.0, scl_inter=0.5)
    assert build_header(img.array, img.affine, meta).get_slope_inter() == (4.0, 0.5)
    assert build_header(img.array, img.affine, img.metadata).get_slope_inter() == (2.0, -1.0)


def test_metadata_without_a_captured_header_uses_its_flat_keys(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    write_nifti(
        tmp_path / "a.nii",
        arr,
        aff,
        {"xyz_units": "mm", "t_units": "sec", "sform_code": 2, "qform_code": 0, "format": "nifti2"},
    )
    back = nib.load(tmp_path / "a.nii")
    assert isinstance(back, nib.Nifti2Image)
    assert (int(back.header["sform_code"]), int(back.header["qform_code"])) == (2, 1)  # qform 0 -> 1 (as before)
    assert back.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_array_equal(back.affine, aff)
    np.testing.assert_array_equal(np.asarray(back.dataobj), arr)


def test_derived_metadata_keeps_geometry_drops_value_fields(tmp_path: Path) -> None:
    img = read_nifti(odd_nifti(tmp_path / "odd.nii"))
    meta = derived_metadata(img.metadata, intent="label", prediction_of=["bold"])
    pred = np.zeros(img.array.shape[:3], np.uint8)
    write_nifti(tmp_path / "p.nii", pred, img.affine, meta)
    ref, out = raw_header(tmp_path / "odd.nii"), raw_header(tmp_path / "p.nii")
    for key in (
        "sform_code",
        "qform_code",
        "xyzt_units",
        "quatern_b",
        "quatern_c",
        "quatern_d",
        "qoffset_x",
        "qoffset_y",
        "qoffset_z",
        "srow_x",
        "srow_y",
        "srow_z",
        "dim_info",
        "slice_start",
        "slice_end",
    ):
        assert _same(ref[key], out[key]), key
    np.testing.assert_array_equal(ref["pixdim"][:4], out["pixdim"][:4])
    assert out.get_intent()[0] == "label" and out["descrip"] == b"" and out.get_slope_inter() == (None, None)
    assert not out.extensions and meta["prediction_of"] == ["bold"]
