"""A region's TIFF input: a file of several image series is never converted as its first series
silently; ``--series N`` / ``ConvertOptions(series=N)`` / ``RegionSource.open(region, N)`` pick one,
and the chosen series is what every worker (thread or process) reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from radiobject.cli.main import build_parser, main
from radiobject.convert import ConvertOptions, Region, RegionSource, convert_regions, convert_tiff
from radiobject.errors import TiffError


def _two_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A plain TIFF of two image series of different shapes (tifffile writes each as its own series)."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 60000, (5, 32, 24), dtype=np.uint16)
    b = rng.integers(0, 60000, (7, 16, 12), dtype=np.uint16)
    with tifffile.TiffWriter(path) as w:
        for arr in (a, b):
            w.write(arr, metadata={"axes": "ZYX"})
    return a, b


def test_region_source_refuses_several_series_unless_one_is_chosen(tmp_path: Path) -> None:
    path = tmp_path / "two.tif"
    a, b = _two_series(path)
    region = Region("two", (path,))
    with pytest.raises(TiffError, match=r"holds 2 image series.*\(5, 32, 24\).*\(7, 16, 12\)") as info:
        RegionSource.open(region)
    assert info.value.path == str(path) and "--series N" in info.value.reason
    for series, want in ((0, a), (1, b)):
        src = RegionSource.open(region, series)
        assert src.axes == "zyx" and src.shape == want.shape and src.info.series == series
        np.testing.assert_array_equal(src.read({"z": slice(None), "y": slice(None), "x": slice(None)}), want)


def test_a_single_series_file_needs_no_choice(tmp_path: Path) -> None:
    path = tmp_path / "one.tif"
    data = np.arange(3 * 20 * 10, dtype=np.uint8).reshape(3, 20, 10)
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "ZYX"})
    src = RegionSource.open(Region("one", (path,)))
    assert src.info.series == 0
    result = convert_tiff(path, tmp_path / "one.ome.zarr", ConvertOptions(workers=1))
    assert result.ok, result.error
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "one.ome.zarr" / "0"), mode="r")[...], data)


def test_convert_tiff_cli_refuses_several_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in" / "two.tif"
    path.parent.mkdir()
    _two_series(path)
    out = tmp_path / "out"
    rc = main(["convert-tiff", str(path), "-o", str(out), "--workers", "1", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 1, text
    assert "FAILED" in text and "0/1 regions converted" in text
    assert f"TiffError: {path}: holds 2 image series" in text
    assert "(5, 32, 24)" in text and "(7, 16, 12)" in text and "--series N" in text
    assert not (out / "two.ome.zarr").exists()


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_convert_tiff_cli_series_1_converts_the_second_series_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], executor: str
) -> None:
    path = tmp_path / "two.tif"
    _, b = _two_series(path)
    out = tmp_path / "out"
    argv = ["convert-tiff", str(path), "-o", str(out), "--series", "1", "--workers", "2", "--executor", executor]
    rc = main([*argv, "--pyramid-levels", "1", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "1/1 regions converted" in text
    level0 = zarr.open_array(str(out / "two.ome.zarr" / "0"), mode="r")
    assert level0.shape == b.shape and level0.dtype == b.dtype
    np.testing.assert_array_equal(level0[...], b)
    own = zarr.open_group(str(out / "two.ome.zarr"), mode="r").attrs["radiobject"]
    assert isinstance(own, dict) and own["tiff_series"] == 1


def test_series_option_defaults_to_none_and_refuses_a_negative_index(tmp_path: Path) -> None:
    parser = build_parser()
    assert parser.parse_args(["convert-tiff", "x.tif", "-o", "o"]).series is None
    assert parser.parse_args(["convert-tiff", "x.tif", "-o", "o", "--series", "1"]).series == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["convert-tiff", "x.tif", "-o", "o", "--series", "-1"])
    assert ConvertOptions().series is None
    with pytest.raises(ValueError, match="series must be >= 0"):
        ConvertOptions(series=-1)


def test_an_index_past_the_last_series_fails_that_region_only(tmp_path: Path) -> None:
    _two_series(tmp_path / "two.tif")
    (res,) = convert_regions([tmp_path / "two.tif"], tmp_path / "out", ConvertOptions(workers=1, series=2))
    assert not res.ok and res.error is not None and "series 2 out of range (file has 2)" in res.error
