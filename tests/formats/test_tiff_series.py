"""A TIFF holding several image series is never read as its first series silently: the reader
refuses it (``TiffError`` naming the file, the count and each series' shape) unless a series is
chosen; a slide's associated images (thumbnail, label, macro) and pyramid levels are not series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from radiobject.errors import TiffError
from radiobject.formats.tiff import image_series, open_tiff_array, read_tiff, tiff_info
from tests.conftest import data_path


def _two_series(path: Path, *, ome: bool = False, same_shape: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 1000, (5, 32, 24), dtype=np.uint16)
    b = rng.integers(0, 1000, (5, 32, 24) if same_shape else (7, 16, 12), dtype=np.uint16)
    with tifffile.TiffWriter(path, ome=ome) as w:
        for arr in (a, b):
            w.write(arr, metadata={"axes": "ZYX"})
    return a, b


@pytest.mark.parametrize("ome", [False, True])
def test_several_series_are_refused_naming_file_count_and_shapes(tmp_path: Path, ome: bool) -> None:
    path = tmp_path / ("two.ome.tif" if ome else "two.tif")
    _two_series(path, ome=ome)
    for read in (read_tiff, tiff_info, open_tiff_array):
        with pytest.raises(TiffError, match=r"holds 2 image series.*\(5, 32, 24\).*\(7, 16, 12\)") as info:
            read(path)
        assert info.value.path == str(path) and "series=N" in info.value.reason


@pytest.mark.parametrize("ome", [False, True])
def test_a_chosen_series_is_read(tmp_path: Path, ome: bool) -> None:
    path = tmp_path / ("two.ome.tif" if ome else "two.tif")
    a, b = _two_series(path, ome=ome)
    for series, want in ((0, a), (1, b)):
        img = read_tiff(path, series=series)
        assert img.metadata["series"] == series and img.metadata["n_series"] == 2
        np.testing.assert_array_equal(img.array[...], want.T)
        assert tiff_info(path, series).shape == want.shape
        np.testing.assert_array_equal(open_tiff_array(path, series)[...], want)


def test_series_of_one_shape_are_several_images_too(tmp_path: Path) -> None:
    _two_series(tmp_path / "same.tif", same_shape=True)
    with pytest.raises(TiffError, match="holds 2 image series"):
        read_tiff(tmp_path / "same.tif")


def test_plain_pages_of_two_shapes_are_two_series(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    with tifffile.TiffWriter(path) as w:
        for shape in ((32, 32), (32, 32), (16, 16)):
            w.write(np.zeros(shape, np.uint8), metadata=None)
    with pytest.raises(TiffError, match=r"holds 2 image series.*\(2, 32, 32\).*\(16, 16\)"):
        read_tiff(path)
    assert read_tiff(path, series=1).shape == (16, 16, 1)


def test_reduced_resolution_pages_are_levels_of_one_series(tmp_path: Path) -> None:
    path = tmp_path / "pyramid.tif"
    base = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    with tifffile.TiffWriter(path) as w:
        w.write(base, tile=(16, 16))
        for f in (2, 4):
            w.write(base[::f, ::f], subfiletype=1, tile=(16, 16))
    img = read_tiff(path)
    assert img.metadata["levels"] == [[64, 64], [32, 32], [16, 16]]
    np.testing.assert_array_equal(img.array[..., 0], base.T)


@pytest.mark.parametrize(
    ("parts", "n_series"),
    [
        (("tiff", "tiledb_bioimaging", "CMU-1-Small-Region.svs"), 4),  # Baseline + Thumbnail, Label, Macro
        (("tiff", "tiledb_bioimaging", "rand_uint16.ome.tiff"), 2),  # Image0 (3 levels) + thumbnail
        (("tiff", "openslide", "boxes.tiff"), 1),  # one series, 4 levels
    ],
)
def test_associated_images_and_levels_are_not_image_series(parts: tuple[str, ...], n_series: int) -> None:
    path = data_path(*parts)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series) == n_series and image_series(tif) == [0]
    info = tiff_info(path)
    assert info.series == 0 and info.n_series == n_series


def test_collection_from_tiffs_refuses_a_file_of_several_series_before_writing(tmp_path: Path) -> None:
    from radiobject import VolumeCollection
    from radiobject.errors import ImageReadError

    _two_series(tmp_path / "two.tif")
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((4, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(ImageReadError, match=r"two.tif: holds 2 image series"):
        VolumeCollection.from_tiffs(str(tmp_path / "c"), [str(tmp_path / "one.tif"), str(tmp_path / "two.tif")])
    assert not (tmp_path / "c").exists()  # checked with the other files, before the collection is created


def test_read_image_passes_the_chosen_tiff_series(tmp_path: Path) -> None:
    from radiobject.formats.detect import read_image

    a, b = _two_series(tmp_path / "two.tif")
    with pytest.raises(TiffError, match="holds 2 image series"):
        read_image(str(tmp_path / "two.tif"))
    np.testing.assert_array_equal(np.asarray(read_image(str(tmp_path / "two.tif"), tiff_series=1).array), b.T)


def test_volume_from_tiff_refuses_several_series_and_reads_the_chosen_one(tmp_path: Path) -> None:
    from radiobject import Volume

    _, b = _two_series(tmp_path / "two.tif")
    with pytest.raises(TiffError, match=r"two.tif: holds 2 image series.*\(7, 16, 12\)"):
        Volume.from_tiff(str(tmp_path / "v0"), tmp_path / "two.tif")
    vol = Volume.from_tiff(str(tmp_path / "v1"), tmp_path / "two.tif", series=1)
    assert vol.shape == (12, 16, 7) and vol.metadata["series"] == 1
    np.testing.assert_array_equal(Volume(str(tmp_path / "v1")).to_numpy(), b.T)


@pytest.mark.parametrize("ome", [False, True])
def test_collection_from_tiffs_reads_the_chosen_series_of_every_file(tmp_path: Path, ome: bool) -> None:
    from radiobject import Volume, VolumeCollection, WriteOptions

    names = ["s0.tif", "s1.tif"]  # OME-XML or not by the content (tifffile's ``ome=``), not the name
    want = {}
    rng = np.random.default_rng(2)
    for name in names:
        b = rng.integers(0, 60000, (7, 16, 12), dtype=np.uint16)  # each file its own second series
        with tifffile.TiffWriter(tmp_path / name, ome=ome) as w:
            w.write(np.zeros((5, 32, 24), np.uint16), metadata={"axes": "ZYX"})
            w.write(b, metadata={"axes": "ZYX"})
        want[name[:-4]] = b
    paths = [str(tmp_path / n) for n in names]
    coll = VolumeCollection.from_tiffs(str(tmp_path / "c"), paths, series=1, options=WriteOptions(workers=2))
    assert sorted(coll.obs_ids) == ["s0", "s1"]
    for obs_id, b in want.items():
        vol = coll.loc[obs_id]
        assert isinstance(vol, Volume)
        assert vol.shape == (12, 16, 7) and vol.metadata["series"] == 1
        assert vol.metadata["tiff_kind"] == ("ome" if ome else "generic")
        np.testing.assert_array_equal(vol.to_numpy(), b.T)


def test_a_negative_series_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    from radiobject import VolumeCollection
    from radiobject.model.file_ingest import FileIngest

    with pytest.raises(ValueError, match="index >= 0"):
        FileIngest(tiff_series=-1)
    _two_series(tmp_path / "two.tif")
    with pytest.raises(ValueError, match="index >= 0"):
        VolumeCollection.from_tiffs(str(tmp_path / "c"), [str(tmp_path / "two.tif")], series=-1)
    assert not (tmp_path / "c").exists()
