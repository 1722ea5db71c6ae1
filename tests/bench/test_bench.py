"""The storage benchmark: quick sweep on small volumes, bit-exact round trips, report files, recommend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiobject.bench.engines import (
    ENGINES,
    SHUFFLES,
    Config,
    open_reader,
    supported,
    write,
)
from radiobject.bench.lossy import measure_lossy, settings_for
from radiobject.bench.plots import pareto_front
from radiobject.bench.recommend import Access, requests_per_access
from radiobject.bench.synthetic import ct_like, mri_like, synthetic_volume
from radiobject.cli.bench import storage_bench
from radiobject.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def test_synthetic_volumes_look_like_their_modality() -> None:
    mri = mri_like((60, 60, 40))
    assert mri.dtype == np.float32 and mri.shape == (60, 60, 40)
    assert 0.65 <= float((mri == 0).mean()) <= 0.85  # skull-stripped background
    assert float(mri.max()) > 300
    ct = ct_like((64, 64, 40))
    assert ct.dtype == np.int16 and ct.min() == -1024
    assert 0.3 <= float((ct < -900).mean()) <= 0.8  # air around the body
    assert float((ct > 300).mean()) > 0  # bone
    assert synthetic_volume("mri", 0.1).shape == (24, 24, 16)
    with pytest.raises(ValueError):
        synthetic_volume("pet")


@pytest.mark.parametrize("engine", ENGINES)
def test_every_supported_lossless_setting_round_trips_bit_exact(engine: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = [mri_like((20, 18, 11)), (rng.normal(0, 300, (20, 18, 11))).astype(np.int16)]
    n = 0
    for data in arrays:
        for codec, level in (("blosc-lz4", 5), ("blosc-zstd", 3), ("zstd", 3), ("gzip", 6), ("none", 0)):
            for shuffle in SHUFFLES:
                for sharded in (False, True):
                    cfg = Config(engine, codec, level, shuffle, (8, 8, 8), sharded)
                    if not supported(cfg):
                        continue
                    path = str(tmp_path / f"a{n}")
                    write(cfg, path, data)
                    out = np.empty_like(data)
                    open_reader(cfg, path).read(tuple(slice(0, s) for s in data.shape), out)
                    assert np.array_equal(out, data), cfg.label()
                    patch = np.empty((5, 7, 6), data.dtype)
                    region = (slice(3, 8), slice(9, 16), slice(1, 7))  # unaligned, crosses chunks
                    open_reader(cfg, path).read(region, patch)
                    assert np.array_equal(patch, data[region]), cfg.label()
                    n += 1
    assert n >= 8


def test_unsupported_combinations_are_refused(tmp_path: Path) -> None:
    assert not supported(Config("tiledb", "blosc-lz4", 5, "byte", (8, 8, 8), True))  # no sharding on TileDB
    assert not supported(Config("zarr-python-v2", "blosc-lz4", 5, "byte", (8, 8, 8), True))
    assert not supported(Config("zarr", "zstd", 3, "byte", (8, 8, 8), True))  # no shuffle codec in Zarr v3 core
    with pytest.raises(ValueError, match="unsupported"):
        write(Config("zarr", "none", 0, "bit", (8, 8, 8), True), str(tmp_path / "x"), np.zeros((8, 8, 8), np.int16))


def test_quick_sweep_writes_csv_plots_summary_and_is_bit_exact(tmp_path: Path) -> None:
    out = tmp_path / "report"
    paths = storage_bench(None, str(out), mode="tiny", scale=0.12, patch=16, progress=lambda _m: None)
    for name in (
        "results.csv",
        "lossy.csv",
        "summary.md",
        "pareto_size_vs_speed.png",
        "heatmap_codec_level.png",
        "heatmap_chunk_shape.png",
        "lossy_ratio_vs_psnr.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert set(paths) >= {"csv", "summary", "lossy_csv"}
    df = pd.read_csv(out / "results.csv")
    assert set(df["volume"]) == {"mri", "ct"}
    assert set(df["engine"]) == set(ENGINES)
    assert df["error"].isna().all(), df["error"].dropna().tolist()
    assert df["exact"].all()  # every lossless configuration round-tripped bit-exactly
    assert {"none", "byte", "bit"} <= set(df["shuffle"])
    for col in ("write_s", "full_ms", "patch_ms", "axial_ms", "coronal_ms", "sagittal_ms", "ratio", "n_files"):
        assert (df[col] > 0).all(), col
    z16 = df[(df["engine"] == "zarr") & (df["chunks"] == "16x16x16") & (df["codec"] == "blosc-lz4")]
    files = z16.groupby(["volume", "sharded"])["n_files"].first().unstack()
    assert (files[True] < files[False]).all()  # sharding cuts the object count
    lossy = pd.read_csv(out / "lossy.csv")
    assert {"psnr_db", "ssim", "mse"} <= set(lossy.columns)
    assert lossy[lossy["param"] == "lossless"]["exact"].all()
    summary = (out / "summary.md").read_text()
    for heading in ("Viewing", "Analysis / training", "Cloud", "Archive", "Sharding", "Zarr v2 vs v3", "Lossy"):
        assert heading in summary


def test_lossy_codecs_respect_their_error_bound() -> None:
    ct = ct_like((64, 64, 12))
    for s in settings_for(ct, quick=True):
        row = measure_lossy(ct, s)
        assert 0 <= row["ssim"] <= 1.0000001 and row["ratio"] > 0
        if s.param == "lossless":
            assert row["exact"], s.codec
        if s.codec in ("zfp", "sz3"):
            tol = float(s.param.split("=")[1])
            assert row["max_abs_err"] <= tol + 0.5 + 1e-6, (s.codec, s.param)  # + integer rounding


def test_pareto_front_keeps_only_non_dominated_rows() -> None:
    df = pd.DataFrame({"t": [1.0, 2.0, 3.0, 2.5], "ratio": [2.0, 3.0, 2.5, 4.0]})
    assert list(pareto_front(df, "t")["t"]) == [1.0, 2.0, 2.5]


def test_access_parsing_and_request_model() -> None:
    assert Access.parse("patch:96") == Access("patch", 96)
    assert Access.parse("slice").metric == "slice_max_ms"
    for bad in ("patch:x", "diagonal", "slice:3"):
        with pytest.raises(ValueError):
            Access.parse(bad)
    shape = (240, 240, 155)
    sharded = {"chunks": "32x32x32", "sharded": True}
    flat = {"chunks": "32x32x32", "sharded": False}
    assert requests_per_access(flat, shape, Access("full"), 64) == 8 * 8 * 5
    assert requests_per_access(sharded, shape, Access("full"), 64) == 1
    assert requests_per_access(flat, shape, Access("patch", 64), 64) == 27  # unaligned 64^3 over 32^3 chunks
    assert requests_per_access(sharded, shape, Access("patch", 64), 64) == 28  # + shard index


def test_recommend_command_prints_settings_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--access", "patch:16", "--scale", "0.12"]) == 0
    text = capsys.readouterr().out
    assert "Recommended:" in text and "WriteOptions(" in text and "Why:" in text and "Stage 2" in text
    assert main(["recommend", "--access", "slice", "--storage", "s3", "--scale", "0.12"]) == 0
    assert "S3 model" in capsys.readouterr().out
    assert main(["recommend", "--access", "sideways"]) == 2


def test_bench_storage_command_on_a_nifti_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nib = pytest.importorskip("nibabel")
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(ct_like((40, 36, 20)), np.eye(4)), str(path))
    out = tmp_path / "out"
    assert main(["bench", "storage", str(path), "--out", str(out), "--tiny", "--no-lossy", "--patch", "12"]) == 0
    assert "all lossless round-trips bit-exact" in capsys.readouterr().out
    df = pd.read_csv(out / "results.csv")
    assert set(df["volume"]) == {"scan"} and df["exact"].all()
    assert not (out / "lossy.csv").exists()
    assert main(["bench", "storage", str(tmp_path / "missing.nii.gz"), "--out", str(out), "--tiny"]) == 2


@pytest.mark.slow
def test_io_benchmark_script_runs_small(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "io.py"),
            "--scale",
            "0.1",
            "--patches",
            "2",
            "--out",
            str(tmp_path),
            "--ro011",
            "/nonexistent/python",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    assert "PASS" in proc.stdout or "MISS" in proc.stdout
    assert (tmp_path / "io_bench.png").exists() and (tmp_path / "io_results.csv").exists()
