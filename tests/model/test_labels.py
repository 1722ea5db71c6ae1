"""Label maps stored with a collection, class counts in obs, class weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radiobject import ImageData
from radiobject.model.labels import (
    LabelMap,
    class_counts_table,
    class_weights,
    get_label_map,
    is_label_collection,
    label_values,
    record_class_counts,
    set_label_map,
)
from radiobject.model.radi_object import RadiObject


def _store(tmp_path: Path) -> tuple[RadiObject, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    segs = {f"s{i}": rng.choice(np.array([0, 1, 3], np.uint8), size=(5, 4, 3), p=[0.7, 0.2, 0.1]) for i in range(3)}
    imgs = {s: ImageData(rng.normal(size=(5, 4, 3)).astype(np.float32), np.eye(4)) for s in segs}
    labels = {s: ImageData(a, np.eye(4)) for s, a in segs.items()}
    radi = RadiObject.from_images(str(tmp_path / "st"), {"img": imgs, "seg": labels})
    return radi, segs


def test_label_map_forms() -> None:
    assert LabelMap.parse({"background": 0, "tumour": 1, "whole": [1, 2]}).names == {0: "background", 1: "tumour"}
    assert LabelMap.parse("2=edema, 1=core").names == {1: "core", 2: "edema"}
    assert LabelMap.parse({"1": "a"}).names == {1: "a"}
    with pytest.raises(ValueError, match="duplicate"):
        LabelMap({1: "a", 2: "a"})
    with pytest.raises(ValueError, match="VALUE=NAME"):
        LabelMap.parse("1:a")
    lm = LabelMap({1: "a"}, {1: (1, 2, 3)})
    assert lm.color(1) == (1, 2, 3) and lm.color(2) != lm.color(3) and lm.name(7) == "label 7"
    assert LabelMap.from_dict(json.loads(json.dumps(lm.to_dict()))) == lm


def test_label_map_stored_and_counts(tmp_path: Path) -> None:
    radi, segs = _store(tmp_path)
    assert get_label_map(radi.seg) is None and not is_label_collection(radi.img)
    set_label_map(radi.seg, {0: "bg", 1: "liver", 3: "tumour"})
    again = RadiObject(radi.uri)
    assert get_label_map(again.seg).names == {0: "bg", 1: "liver", 3: "tumour"}
    table = record_class_counts(again.seg)
    for sid, arr in segs.items():
        v, c = np.unique(arr, return_counts=True)
        want = {int(a): int(b) for a, b in zip(v, c, strict=True)}
        assert want == {k: int(n) for k, n in table.loc[sid].items() if n}
    fresh = RadiObject(radi.uri).seg
    assert "class_counts" in fresh.obs.columns and label_values(fresh) == [0, 1, 3]
    assert class_counts_table(fresh).equals(table)
    assert fresh.volume("s0").to_numpy().tolist() == segs["s0"].tolist()  # pixels untouched


def test_class_weights() -> None:
    w = class_weights({0: 90, 1: 10})
    assert w == pytest.approx({0: 0.2, 1: 1.8})
    w = class_weights({0: 90, 1: 10}, include_background=False, values=[1, 2])
    assert w == pytest.approx({1: 1.0, 2: 1.0})  # unseen class 2 gets the largest seen weight
    med = class_weights({0: 60, 1: 30, 2: 10}, method="median")
    assert med[2] > med[1] > med[0] and np.mean(list(med.values())) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="method"):
        class_weights({0: 1}, method="nope")


def test_label_map_from_dicom_style_metadata(tmp_path: Path) -> None:
    """SEG / RTSTRUCT readers record ``labels: {name: value}`` per volume; the collection shows it."""
    seg = np.zeros((3, 3, 3), np.uint8)
    a = ImageData(seg, np.eye(4), {"format": "dicom-seg", "labels": {"liver": 1, "tumour": 2}})
    b = ImageData(seg, np.eye(4), {"format": "dicom-seg", "labels": {"liver": 1}})
    radi = RadiObject.from_images(str(tmp_path / "st"), {"seg": {"a": a, "b": b}})
    assert get_label_map(radi.seg).names == {1: "liver", 2: "tumour"} and is_label_collection(radi.seg)
    c = ImageData(seg, np.eye(4), {"labels": {"spleen": 1}})  # value 1 named differently: ambiguous
    radi2 = RadiObject.from_images(str(tmp_path / "st2"), {"seg": {"a": a, "c": c}})
    assert get_label_map(radi2.seg) is None
    set_label_map(radi2.seg, {1: "organ"})  # an explicit map wins
    assert get_label_map(radi2.seg).names == {1: "organ"}


def test_collection_label_map_property(tmp_path: Path) -> None:
    radi, _ = _store(tmp_path)
    assert radi.seg.label_map is None
    set_label_map(radi.seg, "1=liver,3=tumour")
    assert RadiObject(radi.uri).seg.label_map.names == {1: "liver", 3: "tumour"}
    assert RadiObject(radi.uri).loc[["s0"]].seg.label_map.names == {1: "liver", 3: "tumour"}  # views too
