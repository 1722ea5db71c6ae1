"""TIFF -> OME-Zarr conversion, checked with an independent reader (ome-zarr-py, what napari uses)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from radiobject.convert import (
    ConvertOptions,
    auto_chunk_size,
    convert_regions,
    convert_tiff,
    find_regions,
)
from radiobject.convert.downsample import downsample_mean, downsample_mode
from radiobject.convert.options import level_count
from tests.conftest import data_path

ome_zarr_io = pytest.importorskip("ome_zarr.io")
ome_zarr_reader = pytest.importorskip("ome_zarr.reader")


def _read_ome_zarr(path: Path):
    """The image node as ome-zarr-py sees it: (level arrays, metadata)."""
    loc = ome_zarr_io.parse_url(str(path))
    assert loc is not None, f"ome-zarr-py cannot open {path}"
    node = next(iter(ome_zarr_reader.Reader(loc)()))
    return [np.asarray(d) for d in node.data], node.metadata


def _ref_mean(a: np.ndarray) -> np.ndarray:
    """Independent 2x2 y/x mean (last two axes), floor size, rounded half up for integers."""
    h, w = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
    b = a[..., :h, :w].astype(np.float64)
    m = (b[..., 0::2, 0::2] + b[..., 1::2, 0::2] + b[..., 0::2, 1::2] + b[..., 1::2, 1::2]) / 4
    return np.floor(m + 0.5).astype(a.dtype) if np.issubdtype(a.dtype, np.integer) else m.astype(a.dtype)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_svs_to_ome_zarr_read_by_ome_zarr_py(tmp_path: Path, version: str) -> None:
    src = data_path("tiff", "tiledb_bioimaging", "CMU-1-Small-Region.svs")
    out = tmp_path / "cmu.ome.zarr"
    res = convert_tiff(src, out, ConvertOptions(workers=2, ngff_version=version, chunk_size=512))
    assert res.ok, res.error
    levels, meta = _read_ome_zarr(out)
    # 2967 x 2220 halves until the longest edge is <= 512: 2967, 1483, 741, 370
    assert [lv.shape for lv in levels] == [(3, 2967, 2220), (3, 1483, 1110), (3, 741, 555), (3, 370, 277)]
    assert [a["name"] for a in meta["axes"]] == ["c", "y", "x"]
    assert [a["type"] for a in meta["axes"]] == ["channel", "space", "space"]
    assert meta["axes"][1]["unit"] == "micrometer"
    assert meta["channel_names"] == ["R", "G", "B"]
    ref = np.moveaxis(tifffile.imread(src), -1, 0)
    np.testing.assert_array_equal(levels[0], ref)
    np.testing.assert_array_equal(levels[1], _ref_mean(ref))
    scales = [t[0]["scale"] for t in meta["coordinateTransformations"]]
    assert scales[0] == pytest.approx([1.0, 0.499, 0.499]) and scales[3] == pytest.approx([1.0, 3.992, 3.992])
    if version == "0.5":
        group = json.loads((out / "zarr.json").read_text())
        assert group["attributes"]["ome"]["version"] == "0.5"
        arr = json.loads((out / "0" / "zarr.json").read_text())
        assert arr["dimension_names"] == ["c", "y", "x"]
        assert arr["codecs"][0]["name"] == "sharding_indexed"
    else:
        attrs = json.loads((out / ".zattrs").read_text())
        assert attrs["multiscales"][0]["version"] == "0.4"
        assert json.loads((out / "0" / ".zarray").read_text())["dimension_separator"] == "/"
        assert attrs["radiobject"]["affine"][0][0] == pytest.approx(0.499e-3)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
@pytest.mark.parametrize(
    "name",
    [
        "multi-channel-time-series.ome.tif",
        "multi-channel-z-series.ome.tif",
        "4D-series.ome.tif",
        "single-channel.ome.tif",
    ],
)
def test_artificial_ome_to_ome_zarr(tmp_path: Path, name: str, version: str) -> None:
    src = data_path("tiff", "tiledb_bioimaging", "artificial-ome-tiff", name)
    out = tmp_path / "img.ome.zarr"
    res = convert_tiff(src, out, ConvertOptions(workers=2, ngff_version=version, pyramid_levels=3))
    assert res.ok, res.error
    levels, meta = _read_ome_zarr(out)
    ref = tifffile.imread(src)
    assert len(levels) == 3
    np.testing.assert_array_equal(levels[0], ref)
    np.testing.assert_array_equal(levels[1], _ref_mean(ref))
    np.testing.assert_array_equal(levels[2], _ref_mean(_ref_mean(ref)))
    names = [a["name"] for a in meta["axes"]]
    assert names == [a for a in "tczyx" if a in names] and names[-2:] == ["y", "x"]
    if "c" in names:
        assert len(meta["channel_names"]) == ref.shape[names.index("c")]
        lo = ref.min(axis=tuple(i for i in range(ref.ndim) if i != names.index("c")))
        hi = ref.max(axis=tuple(i for i in range(ref.ndim) if i != names.index("c")))
        assert [c[0] for c in meta["contrast_limits"]] == lo.tolist()  # omero window start/end = data range
        assert [c[1] for c in meta["contrast_limits"]] == hi.tolist()


def test_boxes_and_rand_uint16_convert(tmp_path: Path) -> None:
    boxes = data_path("tiff", "openslide", "boxes.tiff")
    rand = data_path("tiff", "tiledb_bioimaging", "rand_uint16.ome.tiff")
    res = convert_tiff(boxes, tmp_path / "boxes.ome.zarr", ConvertOptions(workers=1, pyramid_levels=4))
    assert res.ok and res.level_shapes == [(3, 250, 300), (3, 125, 150), (3, 62, 75), (3, 31, 37)]
    levels, _ = _read_ome_zarr(tmp_path / "boxes.ome.zarr")
    assert [lv.shape for lv in levels] == [(3, 250, 300), (3, 125, 150), (3, 62, 75), (3, 31, 37)]
    res = convert_tiff(rand, tmp_path / "rand.ome.zarr", ConvertOptions(workers=2, min_size=128))
    assert res.ok and res.n_levels == 3
    levels, meta = _read_ome_zarr(tmp_path / "rand.ome.zarr")
    np.testing.assert_array_equal(levels[0], tifffile.imread(rand))
    assert meta["channel_names"] == ["Channel 1 R", "Channel 1 G", "Channel 1 B"]


def test_labels_use_mode_and_no_omero(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lab = np.repeat(np.repeat(rng.integers(0, 5, size=(40, 50), dtype=np.uint8), 3, 0), 3, 1)
    lab[::7, ::5] = 9  # isolated speckles that a mean would smear into new values
    src = tmp_path / "labels.tif"
    tifffile.imwrite(src, lab, tile=(64, 64))
    out = tmp_path / "labels.ome.zarr"
    res = convert_tiff(src, out, ConvertOptions(labels=True, pyramid_levels=3, chunk_size=64, workers=2))
    assert res.ok, res.error
    levels, _ = _read_ome_zarr(out)
    for lv in levels:
        assert set(np.unique(lv)) <= set(np.unique(lab))
    np.testing.assert_array_equal(levels[1], downsample_mode(lab, (2, 2)))
    attrs = zarr.open_group(str(out), mode="r").attrs.asdict()
    assert attrs["ome"]["multiscales"][0]["type"] == "mode" and "omero" not in attrs["ome"]


def test_downsample_z_volume(tmp_path: Path) -> None:
    vol = np.random.default_rng(4).integers(0, 1000, size=(9, 40, 30), dtype=np.uint16)
    src = tmp_path / "vol.ome.tif"
    tifffile.imwrite(src, vol, ome=True, metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0})
    out = tmp_path / "vol.ome.zarr"
    res = convert_tiff(src, out, ConvertOptions(downsample_z=True, pyramid_levels=2, workers=1))
    assert res.ok, res.error
    levels, meta = _read_ome_zarr(out)
    assert levels[1].shape == (4, 20, 15)
    np.testing.assert_array_equal(levels[1], downsample_mean(vol, (2, 2, 2)))
    assert meta["coordinateTransformations"][1][0]["scale"] == [4.0, 2.0, 2.0]


def test_downsample_functions() -> None:
    a = np.array([[1, 2, 9], [3, 5, 9], [7, 7, 9]], dtype=np.uint8)
    assert downsample_mean(a, (2, 2)).tolist() == [[3]]  # (1+2+3+5)/4 = 2.75 -> 3, odd edge dropped
    assert downsample_mode(np.array([[4, 6], [6, 1]]), (2, 2)).tolist() == [[6]]
    assert downsample_mode(np.array([[4, 6], [2, 1]]), (2, 2)).tolist() == [[4]]  # tie -> top-left
    f = np.array([[0.5, 1.5], [2.5, 3.5]], dtype=np.float32)
    assert downsample_mean(f, (2, 2)).dtype == np.float32 and downsample_mean(f, (2, 2))[0, 0] == 2.0
    assert downsample_mean(np.full((2, 2), 65535, np.uint16), (2, 2))[0, 0] == 65535


def test_options_rules() -> None:
    assert auto_chunk_size(50_000, 60_000, 4, 2) == 2048  # 4 x 2048^2 x 2 B = 32 MiB
    assert auto_chunk_size(2_000, 2_000, 4, 2) == 512
    assert auto_chunk_size(100, 100, 1, 1) == 256
    assert level_count((20_000, 20_000), 512, None) == 7  # 20000 -> 312
    assert level_count((500, 400), 512, None) == 1
    assert level_count((250, 300), 512, 9) == 8 and level_count((4, 4), 512, 9) == 3
    for bad in [{"compression": "gzip"}, {"compression_level": 0}, {"ngff_version": "0.3"}, {"workers": 0}]:
        with pytest.raises(ValueError):
            ConvertOptions(**bad)


def _region_dir(tmp_path: Path) -> Path:
    art = data_path("tiff", "tiledb_bioimaging", "artificial-ome-tiff")
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(art / "single-channel.ome.tif", d / "scan_R000_DAPI.ome.tif")
    shutil.copy(art / "single-channel.ome.tif", d / "scan_R000_CD45.ome.tif")
    shutil.copy(art / "multi-channel.ome.tif", d / "scan_R001_all.ome.tif")
    (d / "scan_R002_broken.tif").write_bytes(b"II*\x00" + b"\x00" * 10)
    return d


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_regions_stack_channels_and_failures_do_not_stop_others(tmp_path: Path, executor: str) -> None:
    d = _region_dir(tmp_path)
    assert [r.name for r in find_regions([d])] == ["scan_R000", "scan_R001", "scan_R002"]
    opts = ConvertOptions(workers=2, executor=executor, compression="zstd", compression_level=3)
    results = {r.name: r for r in convert_regions([d], tmp_path / "out", opts)}
    assert results["scan_R000"].ok and results["scan_R001"].ok
    assert not results["scan_R002"].ok and "scan_R002_broken.tif" in results["scan_R002"].error
    assert not (tmp_path / "out" / "scan_R002.ome.zarr").exists()
    levels, meta = _read_ome_zarr(tmp_path / "out" / "scan_R000.ome.zarr")
    assert levels[0].shape == (2, 167, 439)
    assert meta["channel_names"] == ["scan_R000_CD45", "scan_R000_DAPI"]  # files in name order
    one = tifffile.imread(d / "scan_R000_DAPI.ome.tif")
    np.testing.assert_array_equal(levels[0], np.stack([one, one]))
    assert results["scan_R000"].seconds > 0 and results["scan_R000"].bytes_out > 0


def test_region_selection(tmp_path: Path) -> None:
    d = _region_dir(tmp_path)
    results = convert_regions([d], tmp_path / "out", ConvertOptions(workers=1), regions=["R001"])
    assert [r.name for r in results] == ["scan_R001"] and results[0].ok
    with pytest.raises(ValueError, match="R009"):
        convert_regions([d], tmp_path / "out", ConvertOptions(workers=1), regions=["R009"])
    again = convert_regions([d], tmp_path / "out", ConvertOptions(workers=1), regions=["R001"])
    assert not again[0].ok and "exists" in again[0].error
    assert (tmp_path / "out" / "scan_R001.ome.zarr").exists()  # an existing output is never deleted


@pytest.mark.parametrize("compression", ["blosc", "zstd", "lz4", "none"])
def test_codecs(tmp_path: Path, compression: str) -> None:
    src = data_path("tiff", "tiledb_bioimaging", "rand_uint16.ome.tiff")
    for version in ("0.5", "0.4"):
        out = tmp_path / f"{compression}-{version}.ome.zarr"
        res = convert_tiff(
            src,
            out,
            ConvertOptions(
                compression=compression, compression_level=9, ngff_version=version, workers=1, chunk_size=64
            ),
        )
        assert res.ok, res.error
        np.testing.assert_array_equal(zarr.open_array(str(out / "0"), mode="r")[...], tifffile.imread(src))
        if version == "0.5":
            meta = json.loads((out / "0" / "zarr.json").read_text())
            inner = [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]]
            want = {"blosc": "blosc", "zstd": "zstd", "lz4": "blosc", "none": None}[compression]
            assert (want in inner) if want else inner == ["bytes"]
        else:
            comp = json.loads((out / "0" / ".zarray").read_text())["compressor"]
            assert (comp is None) == (compression == "none")


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_many_blocks_odd_sizes_all_levels_exact(tmp_path: Path, version: str) -> None:
    """Small blocks force many shards per level (level 1 fused from memory, the rest from the
    level above); every level must equal the independent mean chain."""
    data = np.random.default_rng(5).integers(0, 4000, size=(2, 1001, 1103), dtype=np.uint16)
    src = tmp_path / "odd.ome.tif"
    tifffile.imwrite(src, data, tile=(128, 128), ome=True, metadata={"axes": "CYX"})
    out = tmp_path / "odd.ome.zarr"
    opts = ConvertOptions(workers=2, chunk_size=128, block_bytes=2**18, ngff_version=version, min_size=100)
    res = convert_tiff(src, out, opts)
    assert res.ok, res.error
    levels, _ = _read_ome_zarr(out)
    want = data
    assert len(levels) == 5
    for lv in levels:
        np.testing.assert_array_equal(lv, want)
        want = _ref_mean(want)
    if version == "0.5":
        shards = [
            json.loads((out / str(i) / "zarr.json").read_text())["chunk_grid"]["configuration"]["chunk_shape"]
            for i in range(2)
        ]
        assert shards == [[1, 256, 256], [1, 128, 128]]


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_output_passes_ome_zarr_models_validation(tmp_path: Path, version: str) -> None:
    """A second independent check: the pydantic NGFF models of ome-zarr-models accept the output."""
    models = pytest.importorskip(f"ome_zarr_models.v0{version[-1]}.image")
    src = data_path("tiff", "tiledb_bioimaging", "artificial-ome-tiff", "multi-channel-time-series.ome.tif")
    out = tmp_path / "img.ome.zarr"
    assert convert_tiff(src, out, ConvertOptions(workers=1, ngff_version=version, pyramid_levels=2)).ok
    image = models.Image.from_zarr(zarr.open_group(str(out), mode="r"))
    attrs = image.attributes if version == "0.4" else image.ome_attributes
    assert [d.path for d in attrs.multiscales[0].datasets] == ["0", "1"]


def test_single_channel_ome_names_become_channel_labels(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for marker, value in [("DAPI", 10), ("CD3", 20)]:
        tifffile.imwrite(
            d / f"slide_R007_{marker.lower()}.ome.tif",
            np.full((64, 80), value, np.uint16),
            ome=True,
            metadata={"axes": "YX", "Channel": {"Name": marker}},
        )
    [res] = convert_regions([d], tmp_path / "out", ConvertOptions(workers=1))
    assert res.ok, res.error
    levels, meta = _read_ome_zarr(tmp_path / "out" / "slide_R007.ome.zarr")
    assert meta["channel_names"] == ["CD3", "DAPI"]  # files in name order: ..._cd3 before ..._dapi
    assert levels[0][:, 0, 0].tolist() == [20, 10]


def test_float_with_nan_gets_finite_windows(tmp_path: Path) -> None:
    img = np.linspace(-1.5, 2.5, 40 * 60, dtype=np.float32).reshape(40, 60)
    img[3, 4] = np.nan
    src = tmp_path / "f.tif"
    tifffile.imwrite(src, img)
    out = tmp_path / "f.ome.zarr"
    assert convert_tiff(src, out, ConvertOptions(workers=1)).ok
    window = zarr.open_group(str(out), mode="r").attrs["ome"]["omero"]["channels"][0]["window"]
    assert window["start"] == pytest.approx(-1.5) and window["end"] == pytest.approx(2.5)
    levels, _ = _read_ome_zarr(out)
    np.testing.assert_array_equal(levels[0], img)


def test_stripped_compressed_source_read_in_full_width_bands(tmp_path: Path) -> None:
    from radiobject.convert import Region, plan_region

    data = np.random.default_rng(6).integers(0, 3000, size=(2, 300, 1000), dtype=np.uint16)
    src = tmp_path / "strips.ome.tif"
    tifffile.imwrite(src, data, rowsperstrip=16, compression="lzw", ome=True, metadata={"axes": "CYX"})
    opts = ConvertOptions(workers=2, chunk_size=128, block_bytes=2**18, pyramid_levels=3)
    plan = plan_region(Region("s", (src,)), tmp_path, opts, tmp_path / "s.ome.zarr")
    assert plan.full_width and plan.level0_edges == (1, 256, 1000)
    res = convert_tiff(src, tmp_path / "s.ome.zarr", opts)
    assert res.ok, res.error
    levels, _ = _read_ome_zarr(tmp_path / "s.ome.zarr")
    np.testing.assert_array_equal(levels[0], data)
    np.testing.assert_array_equal(levels[1], _ref_mean(data))
    np.testing.assert_array_equal(levels[2], _ref_mean(_ref_mean(data)))


def test_overwrite_with_a_different_image_in_the_same_process(tmp_path: Path) -> None:
    a = tmp_path / "a.tif"
    b = tmp_path / "b.tif"
    tifffile.imwrite(a, np.full((100, 120), 7, np.uint16))
    tifffile.imwrite(b, np.arange(50 * 70, dtype=np.uint8).reshape(50, 70))
    out = tmp_path / "o.ome.zarr"
    assert convert_tiff(a, out, ConvertOptions(workers=1)).ok
    res = convert_tiff(b, out, ConvertOptions(workers=1, overwrite=True))
    assert res.ok, res.error
    levels, _ = _read_ome_zarr(out)
    np.testing.assert_array_equal(levels[0], tifffile.imread(b))


def test_region_files_that_do_not_stack_fail_with_reason(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    tifffile.imwrite(d / "s_R003_a.tif", np.zeros((40, 50), np.uint16))
    tifffile.imwrite(d / "s_R003_b.tif", np.zeros((40, 51), np.uint16))
    tifffile.imwrite(d / "s_R004_a.tif", np.zeros((40, 50), np.uint16))
    tifffile.imwrite(d / "s_R004_b.tif", np.zeros((40, 50), np.uint8))
    results = {r.name: r for r in convert_regions([d], tmp_path / "out", ConvertOptions(workers=1))}
    assert "s_R003_b.tif" in results["s_R003"].error and "size" in results["s_R003"].error
    assert "s_R004_b.tif" in results["s_R004"].error and "dtype" in results["s_R004"].error
