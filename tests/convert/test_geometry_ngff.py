"""OME-Zarr geometry: per-level scale / translation against the source's physical sizes and the
recorded voxel -> mm affine (the same one a TIFF ingest gives); an oblique affine is kept whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radiobject import Volume
from radiobject.formats.ngff import image_attributes, multiscales_metadata, validate_image_attributes

tifffile = pytest.importorskip("tifffile")
zarr = pytest.importorskip("zarr")


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_levels_scale_and_translate_as_the_physical_sizes_say(version: str, tmp_path: Path) -> None:
    from radiobject.convert import ConvertOptions, convert_tiff

    data = np.random.default_rng(0).integers(0, 4000, (3, 32, 40), dtype=np.uint16)  # z, y, x
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0}
    for k in "XYZ":
        meta[f"PhysicalSize{k}Unit"] = "µm"
    tifffile.imwrite(tmp_path / "a.ome.tif", data, metadata=meta, ome=True)
    result = convert_tiff(
        tmp_path / "a.ome.tif", tmp_path / "a.ome.zarr", ConvertOptions(ngff_version=version, pyramid_levels=2)
    )
    assert result.ok, result.error
    group = zarr.open_group(str(tmp_path / "a.ome.zarr"), mode="r")
    attrs = dict(group.attrs)
    ms = (attrs["ome"] if version == "0.5" else attrs)["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in ms["axes"]} == {"micrometer"}
    level0, level1 = (d["coordinateTransformations"] for d in ms["datasets"])
    assert level0 == [{"type": "scale", "scale": [2.0, 0.5, 0.325]}]  # no translation: voxel 0 at 0
    assert level1 == [  # 2x in y / x: voxel 0 of level 1 is centred between voxels 0 and 1
        {"type": "scale", "scale": [2.0, 1.0, 0.65]},
        {"type": "translation", "translation": [0.0, 0.25, 0.1625]},
    ]
    np.testing.assert_array_equal(np.asarray(group["0"]), data)
    assert group["0"].dtype == data.dtype
    recorded = np.asarray(attrs["radiobject"]["affine"])
    vol = Volume.from_tiff(tmp_path / "vol", tmp_path / "a.ome.tif")
    np.testing.assert_allclose(recorded, vol.affine, rtol=1e-15, atol=0)  # x, y, z in mm
    np.testing.assert_allclose(np.diag(recorded)[:3] * 1000, [0.325, 0.5, 2.0], rtol=1e-12)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_an_oblique_affine_is_recorded_whole(version: str) -> None:
    t = np.deg2rad(30.0)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]) @ np.diag(
        [0.5, 0.5, 2.0]
    )
    affine[:3, 3] = [1.25, -3.5, 7.0]
    ms = multiscales_metadata("zyx", [[2.0, 0.5, 0.5]], units={a: "millimeter" for a in "zyx"}, version=version)
    attrs = image_attributes(ms, affine=affine, version=version)
    validate_image_attributes(attrs, version, [(4, 8, 8)])
    np.testing.assert_array_equal(np.asarray(attrs["radiobject"]["affine"]), affine)
    assert attrs["radiobject"]["affine_axes"] == ["x", "y", "z"]
