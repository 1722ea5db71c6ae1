"""Cohort summary (tables) and foreground intensity statistics (pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radiobject import ImageData
from radiobject.model.labels import record_class_counts, set_label_map
from radiobject.model.radi_object import RadiObject
from radiobject.model.stats import cohort_summary, intensity_stats


def _store(tmp_path: Path) -> tuple[RadiObject, dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    imgs, segs = {}, {}
    for i in range(3):
        shape = (6, 5, 4) if i < 2 else (7, 5, 4)
        imgs[f"s{i}"] = (rng.normal(100, 20, size=shape)).astype(np.float32)
        segs[f"s{i}"] = (rng.random(shape) > 0.6).astype(np.uint8)
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    radi = RadiObject.from_images(
        str(tmp_path / "st"),
        {"ct": {s: ImageData(a, aff) for s, a in imgs.items()}, "seg": {s: ImageData(a, aff) for s, a in segs.items()}},
    )
    set_label_map(radi.seg, {0: "bg", 1: "lesion"})
    record_class_counts(radi.seg)
    return RadiObject(radi.uri), imgs, segs


def test_summary(tmp_path: Path) -> None:
    radi, _, segs = _store(tmp_path)
    s = cohort_summary(radi)
    assert s["subjects"] == 3
    assert s["collections"]["ct"]["shapes"] == {"6x5x4": 2, "7x5x4": 1}
    assert s["collections"]["ct"]["spacings"] == {"0.8x0.8x2": 3}
    assert s["collections"]["ct"]["orientations"] == {"RAS": 3}
    lab = s["collections"]["seg"]
    assert lab["labels"] == {"0": "bg", "1": "lesion"}
    assert lab["class_voxels"]["1"] == sum(int(a.sum()) for a in segs.values())


def test_intensity_in_foreground(tmp_path: Path) -> None:
    radi, imgs, segs = _store(tmp_path)
    df = intensity_stats(radi)  # auto: the one label collection is the mask
    assert df["collection"].tolist() == ["ct"] and df["foreground"].iloc[0] == "seg"
    fg = np.concatenate([imgs[s][segs[s] > 0] for s in imgs]).astype(np.float64)
    row = df.iloc[0]
    assert row["voxels"] == fg.size
    assert row["mean"] == pytest.approx(fg.mean()) and row["std"] == pytest.approx(fg.std())
    assert row["p50"] == pytest.approx(np.percentile(fg, 50)) and row["max"] == pytest.approx(fg.max())
    nz = intensity_stats(radi, ["ct"], mask=None)
    assert nz["voxels"].iloc[0] == sum(int((a != 0).sum()) for a in imgs.values())


def test_a_collection_off_the_label_grid(tmp_path: Path) -> None:
    from radiobject.errors import AlignmentError
    from radiobject.model.resample import resample_collection

    radi, imgs, _ = _store(tmp_path)
    resample_collection(radi, "ct", (0.4, 0.8, 2.0), out="ct_fine")  # twice the voxels along x
    radi = RadiObject(radi.uri)
    with pytest.warns(RuntimeWarning, match="ct_fine"):
        df = intensity_stats(radi)  # the implicit mask cannot apply: non-zero voxels, said so
    assert df.set_index("collection").loc["ct_fine", "foreground"] == "nonzero"
    assert df.set_index("collection").loc["ct", "foreground"] == "seg"
    with pytest.raises(AlignmentError, match="differs from mask seg"):
        intensity_stats(radi, ["ct_fine"], mask="seg")  # asked for explicitly: an error
