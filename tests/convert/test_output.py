"""convert-tiff outputs: sample identity, publish-when-complete (exceptions, Ctrl-C), hostile
names, and real S3 output (moto_server on 127.0.0.1) read back with ome-zarr-py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

import radiobject.convert.pipeline as pipeline
from radiobject import StorageOptions
from radiobject.cli.main import main
from radiobject.convert import ConvertOptions, convert_regions, convert_tiff, find_regions
from radiobject.convert.output import UnsafeOutputNameError, output_target, safe_output_name
from tests.s3.conftest import BUCKET

ome_zarr_io = pytest.importorskip("ome_zarr.io")
ome_zarr_reader = pytest.importorskip("ome_zarr.reader")
ome_zarr_format = pytest.importorskip("ome_zarr.format")


def _samples(tmp_path: Path) -> Path:
    """Two samples sharing region token R000, two channels each, plus a second region of A."""
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(3)
    for sample in ("sampleA", "sampleB"):
        for marker in ("CD3", "DAPI"):
            tifffile.imwrite(
                d / f"{sample}_R000_{marker}.ome.tif",
                rng.integers(0, 4000, (70, 90), np.uint16),
                ome=True,
                metadata={"axes": "YX", "Channel": {"Name": marker}},
            )
    tifffile.imwrite(d / "sampleA_R001_DAPI.ome.tif", rng.integers(0, 4000, (70, 90), np.uint16))
    return d


def _read(loc_path: object, fmt: object | None = None) -> tuple[list[np.ndarray], dict]:
    loc = ome_zarr_io.ZarrLocation(loc_path, fmt=fmt) if fmt is not None else ome_zarr_io.parse_url(loc_path)
    assert loc is not None and loc.exists(), f"ome-zarr-py cannot open {loc_path}"
    node = next(iter(ome_zarr_reader.Reader(loc)()))
    return [np.asarray(d) for d in node.data], node.metadata


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_samples_sharing_a_region_token_stay_apart(tmp_path: Path) -> None:
    d = _samples(tmp_path)
    regions = find_regions([d])
    assert [r.name for r in regions] == ["sampleA_R000", "sampleA_R001", "sampleB_R000"]
    assert [r.token for r in regions] == ["R000", "R001", "R000"]
    results = convert_regions([d], tmp_path / "out", ConvertOptions(workers=1), regions=["R000"])
    assert sorted(r.name for r in results) == ["sampleA_R000", "sampleB_R000"] and all(r.ok for r in results)
    assert sorted(os.listdir(tmp_path / "out")) == ["sampleA_R000.ome.zarr", "sampleB_R000.ome.zarr"]
    for sample in ("sampleA", "sampleB"):
        levels, meta = _read(str(tmp_path / "out" / f"{sample}_R000.ome.zarr"))
        assert meta["channel_names"] == ["CD3", "DAPI"]
        ref = np.stack([tifffile.imread(d / f"{sample}_R000_{m}.ome.tif") for m in ("CD3", "DAPI")])
        np.testing.assert_array_equal(levels[0], ref)
    only = convert_regions([d], tmp_path / "out2", ConvertOptions(workers=1), regions=["sampleB_R000"])
    assert [r.name for r in only] == ["sampleB_R000"]


def test_cli_keeps_sample_prefix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _samples(tmp_path)
    rc = main(["convert-tiff", str(d), "-o", str(tmp_path / "out"), "--workers", "1", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    assert sorted(os.listdir(tmp_path / "out")) == [
        "sampleA_R000.ome.zarr",
        "sampleA_R001.ome.zarr",
        "sampleB_R000.ome.zarr",
    ]


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_mid_way_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, np.arange(300 * 400, dtype=np.uint16).reshape(300, 400))
    opts = ConvertOptions(workers=1, chunk_size=64, block_bytes=2**16, pyramid_levels=3)
    calls = {"n": 0}
    real = pipeline.write_downsampled

    def failing(*args: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:  # level 0 (and fused level 1) written, level 2 not
            raise exc
        return real(*args)

    monkeypatch.setattr(pipeline, "write_downsampled", failing)
    out = tmp_path / "out"
    out.mkdir()
    if isinstance(exc, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            convert_tiff(src, out / "big.ome.zarr", opts)
    else:
        res = convert_tiff(src, out / "big.ome.zarr", opts)
        assert not res.ok and "disk on fire" in res.error
    assert calls["n"] == 1
    assert _listing(out) == []  # no final name, no hidden partial folder


def test_failed_overwrite_keeps_the_old_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, np.full((200, 240), 9, np.uint16))
    out = tmp_path / "a.ome.zarr"
    opts = ConvertOptions(workers=1, chunk_size=64, pyramid_levels=3)
    assert convert_tiff(src, out, opts).ok
    before = _listing(tmp_path)

    def boom(*args: object) -> object:
        raise OSError("no space left on device")

    monkeypatch.setattr(pipeline, "write_downsampled", boom)
    tifffile.imwrite(src, np.full((200, 240), 1, np.uint16))
    res = convert_tiff(src, out, ConvertOptions(workers=1, chunk_size=64, pyramid_levels=3, overwrite=True))
    assert not res.ok and "no space" in res.error
    assert _listing(tmp_path) == before
    levels, _ = _read(str(out))
    assert int(levels[0].max()) == 9


def test_hostile_names_stay_inside_the_output_folder(tmp_path: Path) -> None:
    for bad in ["..", "../x", "a/b", "a\\b", ".hidden", "x\x00y", "", " x", "a..b", "c:d"]:
        with pytest.raises(UnsafeOutputNameError):
            safe_output_name(bad, str(tmp_path))
    assert safe_output_name("sampleA_R000", "o") == "sampleA_R000"
    with pytest.raises(UnsafeOutputNameError):
        output_target(tmp_path / "out", "../escape")
    d = tmp_path / "in"
    d.mkdir()
    tifffile.imwrite(d / "..R000_x.tif", np.zeros((20, 30), np.uint8))  # key "..R000"
    [res] = convert_regions([d], tmp_path / "out", ConvertOptions(workers=1))
    assert not res.ok and "UnsafeOutputNameError" in res.error
    assert _listing(tmp_path / "out") == [] and not (tmp_path / "R000.ome.zarr").exists()


def test_symlinked_output_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, np.zeros((20, 30), np.uint8))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.ome.zarr").symlink_to(victim)
    res = convert_tiff(src, out / "a.ome.zarr", ConvertOptions(workers=1, overwrite=True))
    assert not res.ok and "symbolic link" in res.error
    assert (victim / "keep.txt").read_text() == "x" and sorted(os.listdir(victim)) == ["keep.txt"]


def _s3fs(storage: StorageOptions):  # an independent client, not radiobject's storage layer
    import s3fs

    return s3fs.S3FileSystem(
        key=storage.key,
        secret=storage.secret,
        asynchronous=True,
        client_kwargs={"endpoint_url": storage.endpoint_url, "region_name": "us-east-1"},
    )


@pytest.mark.s3
@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_s3_output_read_back_with_ome_zarr_py(
    tmp_path: Path, s3_server: StorageOptions, s3_prefix: str, version: str
) -> None:
    from zarr.storage import FsspecStore

    d = _samples(tmp_path)
    opts = ConvertOptions(workers=2, chunk_size=32, pyramid_levels=2, ngff_version=version)
    results = convert_regions([d], f"{s3_prefix}/out", opts, regions=["R000"], storage=s3_server)
    assert all(r.ok for r in results), [r.error for r in results]
    assert results[0].output == f"{s3_prefix}/out/sampleA_R000.ome.zarr" and results[0].bytes_out > 0
    assert not (Path.cwd() / "s3:").exists()
    fmt = ome_zarr_format.FormatV04() if version == "0.4" else ome_zarr_format.FormatV05()
    for sample in ("sampleA", "sampleB"):
        key = f"{s3_prefix}/out/{sample}_R000.ome.zarr".split("://", 1)[1]
        levels, meta = _read(FsspecStore(_s3fs(s3_server), path=key, read_only=True), fmt)
        ref = np.stack([tifffile.imread(d / f"{sample}_R000_{m}.ome.tif") for m in ("CD3", "DAPI")])
        np.testing.assert_array_equal(levels[0], ref)
        assert levels[1].shape == (2, 35, 45) and meta["channel_names"] == ["CD3", "DAPI"]
    again = convert_regions([d], f"{s3_prefix}/out", opts, regions=["sampleA_R000"], storage=s3_server)
    assert not again[0].ok and "exists" in again[0].error


@pytest.mark.s3
def test_s3_interrupted_output_is_not_an_image(
    tmp_path: Path, s3_server: StorageOptions, s3_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from radiobject.storage import files

    src = tmp_path / "a.tif"
    tifffile.imwrite(src, np.arange(120 * 150, dtype=np.uint16).reshape(120, 150))
    uri = f"{s3_prefix}/a.ome.zarr"
    opts = ConvertOptions(workers=1, chunk_size=32, pyramid_levels=3)
    seen: list[list[str]] = []
    real = pipeline.write_downsampled

    def interrupted(*args: object) -> object:
        seen.append(files.listdir(uri, s3_server))  # while writing: arrays, no group metadata
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_downsampled", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_tiff(src, uri, opts, storage=s3_server)
    assert seen and "0" in seen[0] and "zarr.json" not in seen[0]
    assert files.listdir(uri, s3_server) == []  # cleaned up
    monkeypatch.setattr(pipeline, "write_downsampled", real)
    res = convert_tiff(src, uri, opts, storage=s3_server)
    assert res.ok, res.error
    assert "zarr.json" in files.listdir(uri, s3_server)


@pytest.mark.s3
def test_cli_s3_output_uses_the_ingest_storage_options(
    tmp_path: Path, s3_server: StorageOptions, s3_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zarr.storage import FsspecStore

    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    d = _samples(tmp_path)
    rc = main(
        [
            "convert-tiff",
            str(d),
            "-o",
            f"{s3_prefix}/cli",
            "--workers",
            "1",
            "--no-progress",
            "--regions",
            "sampleB_R000",
            "--s3-endpoint",
            str(s3_server.endpoint_url),
            "--s3-key",
            "testing",
            "--s3-secret",
            "testing",
            "--s3-region",
            "us-east-1",
        ]
    )
    assert rc == 0
    assert not (tmp_path / "s3:").exists()
    key = f"{s3_prefix}/cli/sampleB_R000.ome.zarr".split("://", 1)[1]
    assert key.startswith(BUCKET)
    levels, _ = _read(FsspecStore(_s3fs(s3_server), path=key, read_only=True), ome_zarr_format.FormatV05())
    np.testing.assert_array_equal(levels[0][1], tifffile.imread(d / "sampleB_R000_DAPI.ome.tif"))


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_cli_interrupt_removes_the_partial_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    import signal
    import time

    d = _samples(tmp_path)
    real = pipeline.write_level0
    calls = {"n": 0}

    def interrupted(*args: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:  # mid-way through the conversion
            if how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread while it waits
            time.sleep(0.5)
        return real(*args)

    monkeypatch.setattr(pipeline, "write_level0", interrupted)
    out = tmp_path / "out"
    rc = main(
        [
            "convert-tiff",
            str(d),
            "-o",
            str(out),
            "--workers",
            "1",
            "--no-progress",
            "--chunk-size",
            "32",
            "--regions",
            "sampleA_R000",
            "sampleB_R000",
        ]
    )
    assert rc == (130 if how == "ctrl-c" else 143)
    assert "interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is not None
    names = sorted(os.listdir(out))
    assert not any(n.startswith(".") for n in names)  # no partial image left
    assert "sampleB_R000.ome.zarr" not in names
    for n in names:  # whatever is there is complete
        levels, _ = _read(str(out / n))
        assert levels[0].shape == (2, 70, 90)
    monkeypatch.setattr(pipeline, "write_level0", real)
    rc = main(
        [
            "convert-tiff",
            str(d),
            "-o",
            str(out),
            "--workers",
            "1",
            "--no-progress",
            "--chunk-size",
            "32",
            "--regions",
            "sampleA_R000",
            "sampleB_R000",
            "--skip-existing",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "2/2 regions converted" in text
    assert ("present" in text) == bool(names)
    assert sorted(os.listdir(out)) == ["sampleA_R000.ome.zarr", "sampleB_R000.ome.zarr"]
    levels, _ = _read(str(out / "sampleB_R000.ome.zarr"))
    np.testing.assert_array_equal(levels[0][0], tifffile.imread(d / "sampleB_R000_CD3.ome.tif"))


@pytest.mark.s3
@pytest.mark.slow
def test_s3_output_from_worker_processes(tmp_path: Path, s3_server: StorageOptions, s3_prefix: str) -> None:
    from zarr.storage import FsspecStore

    d = _samples(tmp_path)
    opts = ConvertOptions(workers=2, executor="process", chunk_size=32, pyramid_levels=3)
    [res] = convert_regions([d], f"{s3_prefix}/p", opts, regions=["sampleB_R000"], storage=s3_server)
    assert res.ok, res.error
    key = res.output.split("://", 1)[1]
    levels, _ = _read(FsspecStore(_s3fs(s3_server), path=key, read_only=True), ome_zarr_format.FormatV05())
    np.testing.assert_array_equal(levels[0][0], tifffile.imread(d / "sampleB_R000_CD3.ome.tif"))
    assert [lv.shape for lv in levels] == [(2, 70, 90), (2, 35, 45), (2, 17, 22)]
