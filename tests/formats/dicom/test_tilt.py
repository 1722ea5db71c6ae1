"""Gantry tilt (``_Tilt``) and uneven spacing (``_Eq``, ``_Tilt_Eq``) against the dcm2niix wheel.

Synthetic tilted CT series (both tilt directions, even and uneven spacing, padding value) are
written with pydicom, converted by dcm2niix and by the reader, and compared: same grid (slice
count, widened rows), voxels equal within the stated tolerance (at most 1 stored unit on at most
0.1 % of voxels; float32 rounding ties - observed: none), affine within 1e-3 mm. For the tilt
direction whose in-plane offset grows along +j, dcm2niix's origin is off (see
``radiobject.formats.dicom.tilt``): the default mode is checked against the DICOM geometry itself
and against dcm2niix's affine with that origin corrected; ``resample_tilt="dcm2niix"`` against
dcm2niix's affine as written.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject.formats.dicom import read_dicom_series
from radiobject.formats.dicom.tilt import c_round, equalise_spacing
from radiobject.formats.image import ImageData
from tests.conftest import data_path
from tests.formats.dicom._synth import DCM2NIIX, run_dcm2niix, write_tilted_ct
from tests.formats.dicom._util import reorient_to

needs_dcm2niix = pytest.mark.skipif(not DCM2NIIX.exists(), reason="dcm2niix wheel not installed")

UNEVEN = [3.0, 3.0, 6.0, 3.0, 9.0, 3.0]
CASES = {
    "positive": dict(tilt_deg=14.0, steps_mm=[5.0] * 5),
    "negative": dict(tilt_deg=-14.0, steps_mm=[5.0] * 5),
    "positive-uneven": dict(tilt_deg=12.0, steps_mm=UNEVEN),
    "negative-uneven": dict(tilt_deg=-12.0, steps_mm=UNEVEN),
    "negative-uneven-capped": dict(tilt_deg=-20.0, steps_mm=[1.0, 1.0, 1.0, 1.0, 30.0], manufacturer="SIEMENS"),
    "positive-padding": dict(tilt_deg=17.0, steps_mm=[2.5] * 7, padding_value=-2000, manufacturer="Philips"),
}


def _assert_voxels_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(np.float64) - np.asarray(ref, dtype=np.float64))
    assert diff.max() <= 1.0, f"max difference {diff.max()}"
    assert (diff > 0).mean() <= 1e-3, f"{(diff > 0).mean():.4%} voxels differ"


def _physical_error(out: ImageData, raw: ImageData) -> tuple[float, float]:
    """Largest (slice-index misfit, voxel misfit) of ``out`` sampled back into the raw stack.

    Tilt correction only moves voxels within their slice plane, so every output voxel centre of
    an un-equalised output must fall on a raw slice and equal the raw row interpolation there.
    """
    o, r = np.asarray(out.array).astype(np.float64), np.asarray(raw.array).astype(np.float64)
    ii, jj, kk = np.meshgrid(
        np.arange(2, o.shape[0] - 2, 5), np.arange(o.shape[1]), np.arange(o.shape[2]), indexing="ij"
    )
    vox = np.stack([ii.ravel(), jj.ravel(), kk.ravel(), np.ones(ii.size)])
    u = np.linalg.solve(raw.affine, out.affine @ vox)
    k_err = float(np.abs(u[2] - np.round(u[2])).max())
    inside = (u[1] >= 0) & (u[1] <= r.shape[1] - 1)
    i = np.round(u[0][inside]).astype(int)
    k = np.round(u[2][inside]).astype(int)
    j0 = np.floor(u[1][inside]).astype(int)
    w = u[1][inside] - j0
    j1 = np.minimum(j0 + 1, r.shape[1] - 1)
    want = r[i, j0, k] * (1 - w) + r[i, j1, k] * w
    got = o[vox[0][inside].astype(int), vox[1][inside].astype(int), vox[2][inside].astype(int)]
    return k_err, float(np.abs(want - got).max())


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, nib.Nifti1Image, str]]:
    if not DCM2NIIX.exists():
        pytest.skip("dcm2niix wheel not installed")
    out = {}
    for name, kw in CASES.items():
        root = tmp_path_factory.mktemp(name)
        write_tilted_ct(root / "dcm", **kw)
        files = run_dcm2niix(root / "dcm", root / "nii")
        tilt = [k for k in files if "Tilt" in k]
        assert len(tilt) == 1, f"{name}: dcm2niix wrote {sorted(files)}"
        out[name] = (root / "dcm", files[tilt[0]], tilt[0])
    return out


@needs_dcm2niix
@pytest.mark.parametrize("case", list(CASES))
def test_voxels_and_grid_match_dcm2niix(case: str, converted: dict) -> None:
    folder, ref, suffix = converted[case]
    img = read_dicom_series(folder, resample_tilt=True)
    ours, aff = reorient_to(np.asarray(img.array), img.affine, ref.affine)
    _assert_voxels_close(ours, np.asanyarray(ref.dataobj))
    uneven = "Eq" in suffix
    assert img.metadata["resampled"] == ("tilt+gaps" if uneven else "tilt")
    assert ("spacing_equalised" in img.metadata) == uneven
    tc = img.metadata["tilt_correction"]
    assert tc["origin"] == "exact"
    assert tc["tilt_deg"] == pytest.approx(abs(CASES[case]["tilt_deg"]), abs=1e-3)
    assert tc["rows_added"] == ref.shape[1] - 48 > 0
    # the 3x3 (orthogonal slice axis, spacing) always equals dcm2niix's
    np.testing.assert_allclose(aff[:3, :3], ref.affine[:3, :3], atol=1e-3)
    if CASES[case]["tilt_deg"] > 0:  # dcm2niix's origin is right for this direction
        np.testing.assert_allclose(aff, ref.affine, atol=1e-3)
        assert tc["origin_offset_from_exact_mm"] == 0.0


@needs_dcm2niix
@pytest.mark.parametrize("case", list(CASES))
def test_dcm2niix_origin_mode_matches_its_affine(case: str, converted: dict) -> None:
    folder, ref, _ = converted[case]
    img = read_dicom_series(folder, resample_tilt="dcm2niix")
    ours, aff = reorient_to(np.asarray(img.array), img.affine, ref.affine)
    _assert_voxels_close(ours, np.asanyarray(ref.dataobj))
    np.testing.assert_allclose(aff, ref.affine, atol=1e-3)
    offset = img.metadata["tilt_correction"]["origin_offset_from_exact_mm"]
    if CASES[case]["tilt_deg"] < 0:
        assert offset > 1.0  # dcm2niix's negative-tilt origin is measurably off
        assert any("dcm2niix's origin" in w for w in img.metadata["warnings"])
    else:
        assert offset == 0.0


@pytest.mark.parametrize("tilt", [14.0, -14.0, 25.0, -7.5])
def test_exact_mode_puts_voxels_where_the_dicom_says(tilt: float, tmp_path: Path) -> None:
    write_tilted_ct(tmp_path, tilt_deg=tilt, steps_mm=[4.0] * 6)
    raw = read_dicom_series(tmp_path)
    out = read_dicom_series(tmp_path, resample_tilt=True)
    assert raw.metadata["resampled"] is None and raw.shape == (40, 48, 7)
    k_err, v_err = _physical_error(out, raw)
    assert k_err < 1e-4
    assert v_err <= 0.5 + 1e-6  # integer rounding of the interpolated value only
    a = out.affine[:3, :3]
    assert abs(np.dot(np.cross(a[:, 0], a[:, 1]), a[:, 2])) == pytest.approx(
        np.linalg.norm(np.cross(a[:, 0], a[:, 1])) * np.linalg.norm(a[:, 2]), rel=1e-9
    )


def test_dcm2niix_mode_negative_tilt_is_physically_off(tmp_path: Path) -> None:
    write_tilted_ct(tmp_path, tilt_deg=-14.0, steps_mm=[4.0] * 6)
    raw = read_dicom_series(tmp_path)
    k_err, _ = _physical_error(read_dicom_series(tmp_path, resample_tilt="dcm2niix"), raw)
    assert k_err > 0.01  # documented: voxels land between raw slices


def test_raw_default_unchanged_and_bad_mode(tmp_path: Path) -> None:
    write_tilted_ct(tmp_path, tilt_deg=-10.0, steps_mm=[3.0, 3.0, 7.0])
    raw = read_dicom_series(tmp_path)
    assert raw.shape[2] == 4 and raw.metadata["resampled"] is None
    assert "tilt_correction" not in raw.metadata
    assert any("gantry tilt" in w for w in raw.metadata["warnings"])
    with pytest.raises(ValueError, match="resample_tilt"):
        read_dicom_series(tmp_path, resample_tilt="sideways")


def test_equalise_spacing_rule() -> None:
    data = np.arange(2 * 2 * 4, dtype=np.int16).reshape(2, 2, 4) * 10
    out, sp = equalise_spacing(data, np.array([0.0, 2.0, 4.0, 9.0]))
    assert out.shape[2] == 6 and sp == pytest.approx(1.8)  # ceil(9 / 2) + 1 = 6
    np.testing.assert_array_equal(out[:, :, 0], data[:, :, 0])
    np.testing.assert_array_equal(out[:, :, -1], data[:, :, -1])
    capped, sp2 = equalise_spacing(data, np.array([0.0, 1.0, 2.0, 40.0]))
    assert capped.shape[2] == 8 and sp2 == pytest.approx(40 / 7)  # at most 2 n slices
    assert list(c_round(np.array([-1.5, -0.5, 0.5, 1.5, 2.4]))) == [-2.0, -1.0, 1.0, 2.0, 2.0]


@needs_dcm2niix
@pytest.mark.parametrize("case,suffix", [("gantrytilting/001", "_Tilt_1"), ("sliceincrement/002", "_Tilt_Eq_1")])
def test_real_tilted_series_match_dcm2niix(case: str, suffix: str, tmp_path: Path) -> None:
    folder = data_path("dicom", "dicom2nifti", "failing", *case.split("/"))
    files = run_dcm2niix(folder, tmp_path)
    ref = files[suffix]
    for mode in (True, "dcm2niix"):
        img = read_dicom_series(folder, resample_tilt=mode)
        ours, aff = reorient_to(np.asarray(img.array), img.affine, ref.affine)
        _assert_voxels_close(ours, np.asanyarray(ref.dataobj))
        np.testing.assert_allclose(aff, ref.affine, atol=1e-3)


def test_jittered_positions_shift_each_slice_exactly(tmp_path: Path) -> None:
    import pydicom

    write_tilted_ct(tmp_path, tilt_deg=-14.0, steps_mm=[4.0] * 6, shuffle=False)
    f = sorted(tmp_path.glob("*.dcm"))[3]
    ds = pydicom.dcmread(f)
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    ds.ImagePositionPatient = list(np.asarray(ds.ImagePositionPatient, dtype=np.float64) + iop[3:] * 0.8 * 0.3)
    ds.save_as(f)
    raw = read_dicom_series(tmp_path)
    out = read_dicom_series(tmp_path, resample_tilt=True)
    assert out.metadata["tilt_correction"]["max_slice_residual_rows"] == pytest.approx(0.3, abs=0.02)
    assert any("own offset" in w for w in out.metadata["warnings"])
    # the raw mean-step affine cannot place the moved slice in-plane: only slice placement is checked
    k_err, _ = _physical_error(out, raw)
    assert k_err < 1e-4


def test_ingest_cli_and_collection_resample_tilt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from radiobject import RadiObject, VolumeCollection
    from radiobject.cli.main import main

    write_tilted_ct(tmp_path / "cohort" / "sub-01", tilt_deg=-14.0, steps_mm=[4.0] * 6)
    want = read_dicom_series(tmp_path / "cohort" / "sub-01", resample_tilt=True)
    store = str(tmp_path / "store")
    rc = main(
        [
            "ingest",
            store,
            "--images",
            f"ct={tmp_path / 'cohort' / '*'}",
            "--resample-tilt",
            "exact",
            "--no-progress",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert rc == 0, capsys.readouterr().out
    vol = RadiObject(store)["ct"].iloc[0]
    assert vol.metadata["tilt_correction"]["origin"] == "exact" and vol.shape == want.shape
    np.testing.assert_array_equal(vol.to_numpy(), np.asarray(want.array))
    np.testing.assert_allclose(vol.affine, want.affine, atol=1e-9)
    assert json.loads((tmp_path / "r.json").read_text())["dicom_options"] == {"resample_tilt": "exact"}
    coll = VolumeCollection.from_dicoms(
        str(tmp_path / "c"), {"s": str(tmp_path / "cohort" / "sub-01")}, resample_tilt="dcm2niix"
    )
    assert coll.volume("s").metadata["tilt_correction"]["origin"] == "dcm2niix"
    raw = RadiObject.from_dicoms(str(tmp_path / "raw"), {"ct": str(tmp_path / "cohort" / "*")})
    assert raw["ct"].iloc[0].metadata["resampled"] is None  # default: the untilted original
