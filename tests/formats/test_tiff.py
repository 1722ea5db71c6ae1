"""TIFF / OME-TIFF / SVS readers against the real third-party files and tifffile's own decode."""

from __future__ import annotations

import pickle
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tifffile

from radiobject.errors import ImageReadError, TiffError
from radiobject.formats.tiff import LazyTiffArray, open_tiff_array, read_tiff, tiff_info
from tests.conftest import data_path

ARTIFICIAL = [
    "single-channel.ome.tif",
    "multi-channel.ome.tif",
    "z-series.ome.tif",
    "time-series.ome.tif",
    "multi-channel-z-series.ome.tif",
    "multi-channel-time-series.ome.tif",
    "4D-series.ome.tif",
]


def _ome_pixels(path: Path) -> ET.Element:
    """The first OME Pixels element, parsed independently of the reader under test."""
    with tifffile.TiffFile(path) as tif:
        root = ET.fromstring(tif.ome_metadata)
    image = next(e for e in root if e.tag.endswith("Image"))
    return next(e for e in image if e.tag.endswith("Pixels"))


@pytest.mark.parametrize("name", ARTIFICIAL)
def test_artificial_ome_axes_and_shape_match_ome_xml(name: str) -> None:
    path = data_path("tiff", "tiledb_bioimaging", "artificial-ome-tiff", name)
    pixels = _ome_pixels(path)
    sizes = {a: int(pixels.get(f"Size{a.upper()}")) for a in "tczyx"}
    expected_axes = "".join(a for a in "tczyx" if sizes[a] > 1 or a in "yx")
    info = tiff_info(path)
    assert info.kind == "ome"
    assert info.axes == expected_axes
    assert info.shape == tuple(sizes[a] for a in expected_axes)
    assert info.dtype == np.dtype(pixels.get("Type"))
    assert info.levels == (info.shape,)
    if "c" in info.axes:
        assert len(info.channel_names) == sizes["c"] == len(info.channel_colors)
    # lazy pixels (NGFF order) equal tifffile's decode of the whole series
    ref = tifffile.imread(path)
    arr = open_tiff_array(path)
    assert arr.shape == info.shape == ref.shape
    np.testing.assert_array_equal(arr[...], ref)
    # ImageData: x, y, z[, c][, t] order, the same voxels
    img = read_tiff(path)
    assert img.metadata["ngff_axes"] == expected_axes
    axes = img.metadata["axes"]
    assert axes.startswith("xyz")
    assert img.shape == tuple(sizes[a] for a in axes)
    full = np.asarray(img.array[...])
    src = {a: i for i, a in enumerate(expected_axes)}
    want = ref
    for a in axes:  # insert missing axes as length 1, then transpose
        if a not in src:
            want = want[..., None]
            src[a] = want.ndim - 1
    np.testing.assert_array_equal(full, np.transpose(want, [src[a] for a in axes]))


def test_rand_uint16_pyramid_three_levels() -> None:
    path = data_path("tiff", "tiledb_bioimaging", "rand_uint16.ome.tiff")
    info = tiff_info(path)
    assert info.axes == "cyx"
    assert info.levels == ((3, 512, 128), (3, 256, 64), (3, 128, 32))
    assert info.physical_size == {"x": 0.29, "y": 0.29}
    assert info.units == {"x": "micrometer", "y": "micrometer"}
    assert info.compression == "JPEG" and info.dtype == np.uint16
    assert info.n_series == 2
    for level, shape in enumerate(info.levels):
        img = read_tiff(path, level=level)
        assert img.shape == (shape[2], shape[1], 1, 3)
        ref = tifffile.imread(path, level=level)
        np.testing.assert_array_equal(open_tiff_array(path, level=level)[...], ref)
        # spacing doubles per level, in millimetres
        assert img.affine[0, 0] == pytest.approx(0.29e-3 * 2**level)
    thumb = tiff_info(path, series=1)
    assert thumb.shape == (3, 64, 16)


def test_svs_level0_pixel_exact() -> None:
    path = data_path("tiff", "tiledb_bioimaging", "CMU-1-Small-Region.svs")
    info = tiff_info(path)
    assert info.kind == "svs" and info.axes == "cyx" and info.shape == (3, 2967, 2220)
    assert info.physical_size == {"x": 0.499, "y": 0.499}
    assert info.tile == (240, 240) and info.compression == "JPEG"
    assert info.channel_names == ("R", "G", "B")
    assert info.n_series == 4  # baseline, thumbnail, label, macro
    ref = tifffile.imread(path)  # (y, x, rgb)
    arr = open_tiff_array(path)
    np.testing.assert_array_equal(arr[...], np.moveaxis(ref, -1, 0))
    # partial, strided reads touch only some tiles and still match
    np.testing.assert_array_equal(arr[1, 1000:1500:3, 7:900], ref[1000:1500:3, 7:900, 1])
    img = read_tiff(path)
    np.testing.assert_array_equal(img.array[100:400, 2000:2100, 0, :], np.transpose(ref[2000:2100, 100:400], (1, 0, 2)))
    assert img.affine[0, 0] == pytest.approx(0.499e-3)


def test_boxes_four_levels() -> None:
    path = data_path("tiff", "openslide", "boxes.tiff")
    info = tiff_info(path)
    want = [(250, 300, 3), (125, 150, 3), (62, 75, 3), (31, 37, 3)]
    assert [(s[1], s[2], s[0]) for s in info.levels] == want
    for level, (h, w, c) in enumerate(want):
        arr = open_tiff_array(path, level=level)
        assert arr.shape == (c, h, w)
        np.testing.assert_array_equal(arr[...], np.moveaxis(tifffile.imread(path, level=level), -1, 0))
    assert read_tiff(path, level=3).metadata["levels"][3] == [3, 31, 37]


def test_lazy_slicing_matches_numpy(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 60000, size=(3, 4, 70, 90), dtype=np.uint16)
    path = tmp_path / "czyx.ome.tif"
    tifffile.imwrite(path, data, tile=(32, 32), ome=True, metadata={"axes": "CZYX"})
    arr = open_tiff_array(path)
    assert arr.axes == "czyx" and arr.chunks == (1, 1, 32, 32)
    for key in [
        (1, 2),
        (slice(None), -1, slice(5, 60, 7)),
        (..., slice(3, 4)),
        (0, slice(1, 3), 10, slice(None, None, -1 + 2)),
    ]:
        np.testing.assert_array_equal(arr[key], data[key])
    view = LazyTiffArray(path, axes="xyzct")
    assert view.shape == (90, 70, 4, 3, 1)
    np.testing.assert_array_equal(view[5:9, 1, :, 2, 0], data[2, :, 1, 5:9].T)
    clone = pickle.loads(pickle.dumps(view))
    np.testing.assert_array_equal(clone[..., 0], np.transpose(data, (3, 2, 1, 0)))
    with pytest.raises(IndexError):
        arr[3]


def test_plain_multipage_becomes_z_and_resolution_spacing(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    planes = np.arange(5 * 20 * 30, dtype=np.uint8).reshape(5, 20, 30)
    with tifffile.TiffWriter(path) as tw:
        for plane in planes:  # separate, unrelated pages: a plain multi-page TIFF
            tw.write(plane, metadata=None, resolution=(2.0, 4.0), resolutionunit="CENTIMETER")
    info = tiff_info(path)
    assert info.axes == "zyx" and info.shape == (5, 20, 30)
    assert info.physical_size["x"] == pytest.approx(5000.0) and info.physical_size["y"] == pytest.approx(2500.0)
    np.testing.assert_array_equal(open_tiff_array(path)[...], planes)
    img = read_tiff(path)
    assert img.shape == (30, 20, 5)
    assert np.diag(img.affine)[:3] == pytest.approx([5.0, 2.5, 1.0])  # mm


def test_rgb_interleaved_channels(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", tile=(16, 16))
    info = tiff_info(path)
    assert info.axes == "cyx" and info.channel_names == ("R", "G", "B")
    np.testing.assert_array_equal(open_tiff_array(path)[2], rgb[..., 2])


def test_not_a_tiff(tmp_path: Path) -> None:
    path = tmp_path / "notes.tif"
    path.write_text("this is not an image")
    with pytest.raises(TiffError) as err:
        tiff_info(path)
    assert str(path) in str(err.value) and "not a TIFF" in str(err.value)
    assert isinstance(err.value, ImageReadError)
    with pytest.raises(TiffError, match="file not found"):
        read_tiff(tmp_path / "missing.tif")


def test_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.ones((64, 64), np.uint16))  # header and IFD come first
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(TiffError, match="truncated") as err:
        read_tiff(path)
    assert str(path) in str(err.value)


def test_unsupported_compression(tmp_path: Path) -> None:
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, np.ones((16, 16), np.uint8))
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["Compression"]
        offset, byteorder = tag.valueoffset, tif.byteorder
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 2] = (60123).to_bytes(2, "little" if byteorder == "<" else "big")
    path.write_bytes(bytes(raw))
    with pytest.raises(TiffError, match="unsupported compression 60123"):
        open_tiff_array(path)


def test_bad_series_and_level() -> None:
    path = data_path("tiff", "openslide", "boxes.tiff")
    with pytest.raises(TiffError, match="series 3 out of range"):
        tiff_info(path, series=3)
    with pytest.raises(TiffError, match="level 4 out of range"):
        read_tiff(path, level=4)
