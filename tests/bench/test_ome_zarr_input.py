"""``bench storage`` / ``recommend`` inputs that are OME-Zarr images: any level, NGFF 0.4 and 0.5
(written by ome-zarr-py, an independent writer, and by our own convert-tiff)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from radiobject.bench.inputs import load_input, load_ome_zarr
from radiobject.cli.main import main
from radiobject.convert import ConvertOptions, convert_tiff
from radiobject.errors import ImageReadError

ome_writer = pytest.importorskip("ome_zarr.writer")
ome_format = pytest.importorskip("ome_zarr.format")


def _tomogram() -> np.ndarray:
    """A (z, y, x) float32 volume like a cryo-ET tomogram."""
    rng = np.random.default_rng(5)
    z, y, x = np.meshgrid(np.arange(24), np.arange(40), np.arange(36), indexing="ij")
    return (np.sin(x / 5.0) * np.cos(y / 7.0) + 0.1 * z + rng.normal(0, 0.2, x.shape)).astype(np.float32)


def _write_ome_zarr(path: Path, data: np.ndarray, version: str) -> None:
    import zarr

    fmt = ome_format.FormatV04() if version == "0.4" else ome_format.FormatV05()
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    ome_writer.write_image(data, group, axes="zyx", fmt=fmt, scaler=ome_writer.Scaler(downscale=2, max_layer=2))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_every_level_of_an_ome_zarr_from_ome_zarr_py(tmp_path: Path, version: str) -> None:
    data = _tomogram()
    path = tmp_path / "tomo.ome.zarr"
    _write_ome_zarr(path, data, version)
    import zarr

    name, vol = load_input(str(path))
    assert name == "tomo_L0" and vol.shape == (36, 40, 24)  # x, y, z
    np.testing.assert_array_equal(vol, np.transpose(data, (2, 1, 0)))
    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    ms = (attrs["ome"] if "ome" in attrs else attrs)["multiscales"][0]
    names = [d["path"] for d in ms["datasets"]]
    assert len(names) == 3
    for level in (1, 2):
        ref = np.asarray(zarr.open_array(str(path / names[level]), mode="r")[...])
        assert ref.shape[1] < data.shape[1]
        np.testing.assert_array_equal(load_ome_zarr(str(path), level), np.transpose(ref, (2, 1, 0)))
        name, by_path = load_input(str(path / names[level]))  # a level array path
        assert name == f"tomo_L{level}"
        np.testing.assert_array_equal(by_path, np.transpose(ref, (2, 1, 0)))
    with pytest.raises(ImageReadError, match="level 7"):
        load_ome_zarr(str(path), 7)
    with pytest.raises(ImageReadError, match="level 1"):
        load_input(str(path / names[2]), level=1)


def test_channels_and_2d_images_from_convert_tiff(tmp_path: Path) -> None:
    img = np.random.default_rng(2).integers(0, 3000, (3, 80, 100), dtype=np.uint16)
    src = tmp_path / "slide.ome.tif"
    tifffile.imwrite(src, img, ome=True, metadata={"axes": "CYX"})
    out = tmp_path / "slide.ome.zarr"
    assert convert_tiff(src, out, ConvertOptions(workers=1, pyramid_levels=2, ngff_version="0.5")).ok
    vol = load_ome_zarr(str(out))
    assert vol.shape == (100, 80, 1)  # channel 0, (x, y, z=1)
    np.testing.assert_array_equal(vol[..., 0], img[0].T)


def test_not_an_ome_zarr(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(ImageReadError):
        load_ome_zarr(str(tmp_path / "plain"))
    with pytest.raises(ImageReadError, match="OME-Zarr"):
        load_input(str(tmp_path / "plain"), level=1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_bench_storage_cli_takes_an_ome_zarr_input(
    tmp_path: Path, version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tomo.ome.zarr"
    _write_ome_zarr(path, _tomogram(), version)
    out = tmp_path / "out"
    rc = main(
        [
            "bench",
            "storage",
            "--input",
            str(path),
            "--level",
            "1",
            "--out",
            str(out),
            "--tiny",
            "--no-lossy",
            "--patch",
            "8",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "all lossless round-trips bit-exact" in capsys.readouterr().out
    df = pd.read_csv(out / "results.csv")
    assert set(df["volume"]) == {"tomo_L1"} and df["exact"].all()
    assert main(["recommend", str(path), "--access", "full"]) == 0
