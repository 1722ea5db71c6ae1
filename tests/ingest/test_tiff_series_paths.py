"""Every file constructor that reads TIFFs through a plan takes the series of a TIFF holding
several image series: ``VolumeCollection.from_files(tiff_series=)``, ``RadiObject.from_files(tiff_series=)``
and the layout ingest (``ingest_layout`` / ``ingest_nnunet(tiff_series=)``). Without one such a
file is refused before anything is written; a negative series, or one where no TIFF is read, is
refused too, never accepted and then ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radiobject import RadiObject, Volume, VolumeCollection
from radiobject.errors import ImageReadError
from radiobject.ingest.layouts import LayoutPlan, apply_tiff_series, ingest_nnunet
from radiobject.ingest.layouts.msd import plan_nnunet
from radiobject.ingest.manifest import CohortPlan
from tests.ingest._tiffs import SHAPE_1, nnunet_tiffs, two_series

STORED = SHAPE_1[::-1]  # ZYX as written -> XYZ as stored


def _stored(vol: object, want: np.ndarray) -> None:
    assert isinstance(vol, Volume)
    assert vol.shape == STORED and vol.metadata["series"] == 1
    np.testing.assert_array_equal(vol.to_numpy(), want.T)


def test_collection_from_files_reads_the_chosen_series(tmp_path: Path) -> None:
    want = {s: two_series(tmp_path / "in" / f"{s}.tif", seed=i) for i, s in enumerate(("s0", "s1"))}
    glob = str(tmp_path / "in" / "*.tif")
    with pytest.raises(ImageReadError, match=r"s0.tif: holds 2 image series"):
        VolumeCollection.from_files(str(tmp_path / "c0"), glob)
    assert not (tmp_path / "c0").exists()
    coll = VolumeCollection.from_files(str(tmp_path / "c1"), glob, tiff_series=1)
    assert sorted(coll.obs_ids) == ["s0", "s1"]
    for obs_id, arr in want.items():
        _stored(coll.loc[obs_id], arr)


def test_collection_from_files_refuses_a_negative_series(tmp_path: Path) -> None:
    two_series(tmp_path / "in" / "s0.tif")
    with pytest.raises(ValueError, match="index >= 0"):
        VolumeCollection.from_files(str(tmp_path / "c"), str(tmp_path / "in" / "*.tif"), tiff_series=-1)
    assert not (tmp_path / "c").exists()


def _store_files(tmp_path: Path) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, np.ndarray]]]:
    """Per subject an image and a label, each a TIFF of two series (series 1 on one grid)."""
    images: dict[str, dict[str, str]] = {"img": {}, "seg": {}}
    want: dict[str, dict[str, np.ndarray]] = {"img": {}, "seg": {}}
    for i, sid in enumerate(("sub-01", "sub-02")):
        for j, coll in enumerate(images):
            path = tmp_path / "in" / coll / f"{sid}.tif"
            want[coll][sid] = two_series(path, seed=2 * i + j, dtype=np.uint8 if coll == "seg" else np.uint16)
            images[coll][sid] = str(path)
    return images, want


def test_store_from_files_refuses_several_series_unless_one_is_chosen(tmp_path: Path) -> None:
    images, want = _store_files(tmp_path)
    with pytest.raises(ImageReadError, match=r"sub-01.tif: holds 2 image series"):
        RadiObject.from_files(str(tmp_path / "s0"), images)
    assert not (tmp_path / "s0").exists()
    radi = RadiObject.from_files(str(tmp_path / "s1"), images, tiff_series=1)  # alignment checked on series 1
    assert radi.collection_names == ["img", "seg"] and sorted(radi.obs_subject_ids) == ["sub-01", "sub-02"]
    for coll, per in want.items():
        for sid, arr in per.items():
            _stored(radi[coll].loc[sid], arr)


def test_store_from_files_refuses_a_negative_series_or_one_no_tiff_is_read_with(tmp_path: Path) -> None:
    images, _ = _store_files(tmp_path)
    with pytest.raises(ValueError, match="index >= 0"):
        RadiObject.from_files(str(tmp_path / "s"), images, tiff_series=-1)
    with pytest.raises(ValueError, match="does not apply to fmt='nifti'"):
        RadiObject.from_files(str(tmp_path / "s"), images, fmt="nifti", tiff_series=1)
    assert not (tmp_path / "s").exists()


def test_layout_ingest_reads_the_chosen_series(tmp_path: Path) -> None:
    want = nnunet_tiffs(tmp_path / "ds")
    report = ingest_nnunet(tmp_path / "ds", str(tmp_path / "s0"))
    assert not report.ok and report.aborted and not (tmp_path / "s0").exists()
    failed = report.failed
    assert len(failed) == 4 and all("holds 2 image series" in r["error"] for r in failed)
    report = ingest_nnunet(tmp_path / "ds", str(tmp_path / "s1"), tiff_series=1)
    assert report.ok
    radi = RadiObject(str(tmp_path / "s1"))
    for case, (img, lab) in want.items():
        _stored(radi.img.loc[case], img)
        _stored(radi.label.loc[case], lab)


def test_layout_series_is_checked_before_anything_is_written(tmp_path: Path) -> None:
    nnunet_tiffs(tmp_path / "ds")
    for bad in (-1, True):
        with pytest.raises(ValueError, match="tiff_series must be >= 0"):
            ingest_nnunet(tmp_path / "ds", str(tmp_path / "s"), tiff_series=bad)
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="does not apply to a BIDS dataset"):
        apply_tiff_series(LayoutPlan("bids", str(tmp_path), CohortPlan()), 0)
    lp = plan_nnunet(tmp_path / "ds")
    chosen = apply_tiff_series(lp, 1)
    assert {t.tiff_series for t in chosen.plan.tasks} == {1}
    assert {t.tiff_series for t in lp.plan.tasks} == {None}  # the caller's plan is left as it was
    assert apply_tiff_series(lp, None) is lp
