"""Philips display vs precise scaling: option, default, record, and agreement with dcm2niix -p y/n."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radiobject.formats.dicom import read_dicom_series
from tests.formats.dicom._synth import DCM2NIIX, run_dcm2niix, write_philips_mr, write_tilted_ct
from tests.formats.dicom._util import reorient_to

RS, RI, SS = 2.34, -5.5, 0.0123


@pytest.fixture()
def philips(tmp_path: Path) -> tuple[Path, np.ndarray]:
    stored = write_philips_mr(tmp_path / "dcm", rescale_slope=RS, rescale_intercept=RI, scale_slope=SS)
    return tmp_path / "dcm", stored


def _values(img: object) -> np.ndarray:
    # the ignore below: an ImageData, typed loosely here
    return np.asarray(img.array).transpose(2, 1, 0).astype(np.float64)  # type: ignore[attr-defined]


def test_default_is_display(philips: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RADIOBJECT_PHILIPS_SCALING", raising=False)
    folder, stored = philips
    img = read_dicom_series(folder)
    rec = img.metadata["philips_scaling"]
    assert rec["mode"] == rec["requested"] == "display"
    assert rec["scale_slope"] == pytest.approx(SS, rel=1e-6)
    np.testing.assert_allclose(_values(img), stored * RS + RI, rtol=1e-6)


def test_precise(philips: tuple[Path, np.ndarray]) -> None:
    folder, stored = philips
    img = read_dicom_series(folder, philips_scaling="precise")
    assert img.metadata["philips_scaling"]["mode"] == "precise" and img.array.dtype == np.float32
    ss32 = float(np.float32(SS))  # the private tag is a 32-bit float
    np.testing.assert_allclose(_values(img), (stored * RS + RI) / (RS * ss32), rtol=1e-6)


def test_environment_sets_the_default(philips: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIOBJECT_PHILIPS_SCALING", "precise")
    assert read_dicom_series(philips[0]).metadata["philips_scaling"]["mode"] == "precise"
    assert read_dicom_series(philips[0], philips_scaling="display").metadata["philips_scaling"]["mode"] == "display"
    with pytest.raises(ValueError, match="philips_scaling"):
        read_dicom_series(philips[0], philips_scaling="fancy")


def test_precise_without_scale_slope_keeps_display_visibly(tmp_path: Path) -> None:
    stored = write_philips_mr(tmp_path, rescale_slope=RS, rescale_intercept=RI, scale_slope=None)
    img = read_dicom_series(tmp_path, philips_scaling="precise")
    rec = img.metadata["philips_scaling"]
    assert rec["requested"] == "precise" and rec["mode"] == "display" and "2005,100E" in rec["reason"]
    assert any("precise scaling not applied" in w for w in img.metadata["warnings"])
    np.testing.assert_allclose(_values(img), stored * RS + RI, rtol=1e-6)


def test_other_vendors_unaffected(tmp_path: Path) -> None:
    write_tilted_ct(tmp_path, tilt_deg=0.0, steps_mm=[2.0, 2.0], rows=8, cols=8)
    img = read_dicom_series(tmp_path, philips_scaling="precise")
    assert "philips_scaling" not in img.metadata and img.array.dtype == np.int16


@pytest.mark.skipif(not DCM2NIIX.exists(), reason="dcm2niix wheel not installed")
@pytest.mark.parametrize("flag,mode", [("y", "precise"), ("n", "display")])
def test_matches_dcm2niix(flag: str, mode: str, philips: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    ref = run_dcm2niix(philips[0], tmp_path / "nii", "-p", flag)[""]
    want = np.asanyarray(ref.dataobj).astype(np.float64)  # nibabel applies scl_slope / scl_inter
    img = read_dicom_series(philips[0], philips_scaling=mode)
    ours, aff = reorient_to(np.asarray(img.array).astype(np.float64), img.affine, ref.affine)
    np.testing.assert_allclose(ours, want, rtol=2e-6, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(aff, ref.affine, atol=1e-3)


def test_api_and_cli_thread_the_option(
    philips: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from radiobject import RadiObject, Volume, VolumeCollection
    from radiobject.cli.main import main

    folder, stored = philips
    precise = (stored * RS + RI) / (RS * float(np.float32(SS)))
    vol = Volume.from_dicom(str(tmp_path / "v"), folder, philips_scaling="precise")
    assert vol.metadata["philips_scaling"]["mode"] == "precise"
    np.testing.assert_allclose(vol.to_numpy().transpose(2, 1, 0), precise, rtol=1e-6)
    coll = VolumeCollection.from_dicoms(str(tmp_path / "c"), {"s1": str(folder)}, philips_scaling="precise")
    assert coll.volume("s1").metadata["philips_scaling"]["mode"] == "precise"
    sub = tmp_path / "cohort" / "sub-01"
    sub.parent.mkdir()
    folder.rename(sub)
    store = str(tmp_path / "store")
    rc = main(
        [
            "ingest",
            store,
            "--images",
            f"t1={tmp_path / 'cohort' / '*'}",
            "--philips-scaling",
            "precise",
            "--no-progress",
            "--json",
            str(tmp_path / "report.json"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "Philips DICOM scaling: precise" in out
    assert json.loads((tmp_path / "report.json").read_text())["dicom_options"] == {"philips_scaling": "precise"}
    obs = RadiObject(store)["t1"].obs
    assert json.loads(obs["metadata"].iloc[0])["philips_scaling"]["mode"] == "precise"
    np.testing.assert_allclose(RadiObject(store)["t1"].iloc[0].to_numpy().transpose(2, 1, 0), precise, rtol=1e-6)
