"""The napari reader, called headless (napari itself is not needed); the npe2 manifest validated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import radiobject
from radiobject import ImageData
from radiobject.model.labels import set_label_map
from radiobject.model.radi_object import RadiObject
from radiobject.napari import get_reader, read_store

MANIFEST = Path(radiobject.__file__).parent / "napari.yaml"


def _store(tmp_path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    aff = np.diag([0.8, 0.9, 2.0, 1.0])
    aff[:3, 3] = [-10, 5, 3]
    rng = np.random.default_rng(0)
    t1 = rng.normal(size=(6, 5, 4)).astype(np.float32)
    seg = (rng.random((6, 5, 4)) > 0.5).astype(np.uint8)
    uri = str(tmp_path / "st")
    dwi = ImageData(rng.normal(size=(6, 5, 4, 2)).astype(np.float32), aff)
    radi = RadiObject.from_images(
        uri, {"T1w": {"s1": ImageData(t1, aff)}, "seg": {"s1": ImageData(seg, aff)}, "dwi": {"s1": dwi}}
    )
    set_label_map(radi.seg, {1: "lesion"})
    return uri, t1, seg


def test_reader_opens_store_with_spacing(tmp_path: Path) -> None:
    uri, t1, seg = _store(tmp_path)
    reader = get_reader(uri)
    assert reader is not None and get_reader(str(tmp_path)) is None
    layers = reader(uri)
    by_name = {kw["name"]: (data, kw, kind) for data, kw, kind in layers}
    data, kw, kind = by_name["T1w s1"]
    assert kind == "image" and np.array_equal(data, t1)
    assert kw["scale"] == pytest.approx((0.8, 0.9, 2.0)) and kw["translate"] == pytest.approx((-10, 5, 3))
    data, kw, kind = by_name["seg s1"]
    assert kind == "labels" and np.array_equal(data, seg) and kw["metadata"]["label_names"] == {1: "lesion"}
    assert layers[-1][2] == "labels"  # labels drawn on top
    assert {"dwi s1[0]", "dwi s1[1]"} <= set(by_name)


def test_reader_opens_collection_and_volume(tmp_path: Path) -> None:
    uri, _, seg = _store(tmp_path)
    vol = Path(uri) / "collections" / "seg" / "volumes" / "s1"
    # the ignore below: napari's reader returns a list of layer tuples
    ((data, kw, kind),) = get_reader(str(vol))(str(vol))  # type: ignore[misc]
    assert kind == "labels" and np.array_equal(data, seg)
    ((_, kw, kind),) = read_store(str(Path(uri) / "collections" / "T1w"))
    assert kind == "image" and kw["name"] == "T1w s1"


def test_oblique_affine_is_passed_whole(tmp_path: Path) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    aff = np.array([[c, -s, 0, 1], [s, c, 0, 2], [0, 0, 2, 3], [0, 0, 0, 1.0]])
    uri = str(tmp_path / "ob")
    RadiObject.from_images(uri, {"img": {"a": ImageData(np.zeros((3, 3, 3), np.float32), aff)}})
    ((_, kw, _),) = read_store(uri)
    assert "scale" not in kw and np.allclose(kw["affine"], aff)


def test_manifest() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    m = yaml.safe_load(MANIFEST.read_text())
    (cmd,) = m["contributions"]["commands"]
    module, _, func = cmd["python_name"].partition(":")
    assert module == "radiobject.napari" and callable(getattr(__import__(module, fromlist=[func]), func))
    assert m["contributions"]["readers"][0]["command"] == cmd["id"] and cmd["id"].startswith(m["name"] + ".")


def test_manifest_validates_with_npe2() -> None:
    npe2 = pytest.importorskip("npe2", reason="npe2 (napari's plugin engine) is not installed")
    pm = npe2.PluginManifest.from_file(MANIFEST)
    assert pm.name == "radiobject" and pm.contributions.readers[0].accepts_directories


def test_npe2_discovers_the_plugin_and_reads(tmp_path: Path) -> None:
    """Through napari's own plugin engine: the entry point, the manifest, the reader command."""
    npe2 = pytest.importorskip("npe2", reason="npe2 (napari's plugin engine) is not installed")
    from importlib.metadata import entry_points

    if not [e for e in entry_points(group="napari.manifest") if e.name == "radiobject"]:
        pytest.skip("radiobject is not installed with its napari.manifest entry point (pip install -e .)")
    pm = npe2.PluginManager.instance()
    pm.discover()
    uri, t1, _ = _store(tmp_path)
    readers = [r for r in pm.iter_compatible_readers([uri]) if r.command.startswith("radiobject.")]
    assert readers, "npe2 offers no radiobject reader for a store folder"
    layers = npe2.read([uri], stack=False, plugin_name="radiobject")  # what napari calls
    assert any(kind == "labels" for *_, kind in layers) and np.array_equal(layers[0][0], t1)
