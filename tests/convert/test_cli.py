"""The ``radiobject convert-tiff`` command: settings summary, timing summary, exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from radiobject.cli.main import build_parser, main
from tests.conftest import data_path


def _inputs(tmp_path: Path) -> Path:
    art = data_path("tiff", "tiledb_bioimaging", "artificial-ome-tiff")
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(art / "multi-channel.ome.tif", d / "scan_R000_a.ome.tif")
    shutil.copy(art / "single-channel.ome.tif", d / "scan_R001_a.ome.tif")
    return d


def test_convert_tiff_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _inputs(tmp_path)
    out = tmp_path / "out"
    rc = main(
        [
            "convert-tiff",
            str(d),
            "-o",
            str(out),
            "--workers",
            "2",
            "--chunk-size",
            "128",
            "--compression",
            "zstd",
            "--compression-level",
            "7",
            "--pyramid-levels",
            "2",
            "--regions",
            "R000",
            "--ngff-version",
            "0.4",
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "Chunk size:     128x128 pixels (user)" in text
    assert "Compression:    zstd (level 7)" in text and "Workers:        2 threads" in text
    assert "NGFF version:   0.4 (Zarr v2)" in text
    assert "R000" in text and "R001" not in text.split("Summary:")[1]
    assert "1/1 regions converted" in text
    arr = zarr.open_array(str(out / "scan_R000.ome.zarr" / "1"), mode="r")
    assert arr.shape == (3, 83, 219) and arr.chunks == (1, 83, 128)
    np.testing.assert_array_equal(
        zarr.open_array(str(out / "scan_R000.ome.zarr" / "0"), mode="r")[...],
        tifffile.imread(d / "scan_R000_a.ome.tif"),
    )


def test_convert_tiff_failure_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _inputs(tmp_path)
    (d / "scan_R002_bad.tif").write_text("not a tiff")
    rc = main(["convert-tiff", str(d), "-o", str(tmp_path / "out"), "--workers", "1"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "FAILED" in captured.out and "not a TIFF" in captured.out and "2/3 regions converted" in captured.out
    assert (tmp_path / "out" / "scan_R000.ome.zarr").exists() and (tmp_path / "out" / "scan_R001.ome.zarr").exists()
    assert "block" in captured.err  # the tqdm progress bar


def test_convert_tiff_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["convert-tiff", "x.tif", "-o", "o", "--compression-level", "10"])
    with pytest.raises(SystemExit):
        parser.parse_args(["convert-tiff", "x.tif", "-o", "o", "--compression", "gzip"])
    assert main(["convert-tiff", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "o")]) == 2
    d = _inputs(tmp_path)
    assert main(["convert-tiff", str(d), "-o", str(tmp_path / "o"), "--regions", "R042"]) == 2
    assert "R042" in capsys.readouterr().err
