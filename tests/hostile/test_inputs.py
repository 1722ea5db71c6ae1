"""Hostile source files: each fails its item with a typed error naming the file, never a hang,
a traceback, an out-of-memory or a store that looks finished."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest

from radiobject.errors import NiftiReadError
from radiobject.formats.nifti import read_nifti
from tests.hostile._dicom import mr_slice
from tests.hostile.conftest import manifest, run_cli, write_nifti

pytestmark = pytest.mark.timeout(60)


def _header_patch(src: Path, dst: Path, fmt: str, offset: int, *values: float) -> Path:
    raw = bytearray(src.read_bytes())
    struct.pack_into(fmt, raw, offset, *values)
    dst.write_bytes(bytes(raw))
    return dst


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a word its error must contain)."""
    nii = write_nifti(tmp / "good.nii")
    gz = write_nifti(tmp / "good.nii.gz")
    raw, zraw = nii.read_bytes(), gz.read_bytes()
    out: dict[str, tuple[Path, str]] = {}

    def put(name: str, data: bytes, word: str) -> None:
        (tmp / name).write_bytes(data)
        out[name] = (tmp / name, word)

    put("zero.nii", b"", "empty")
    put("zero.nii.gz", b"", "empty")
    put("trunc.nii", raw[: len(raw) // 2], "truncated")
    put("trunc.nii.gz", zraw[: len(zraw) // 2], "nifti")
    put("junk.nii.gz", os.urandom(4000), "format")
    put("text.nii.gz", gzip.compress(b"hello " * 200), "format")
    crc = bytearray(zraw)
    crc[-8] ^= 0xFF  # the gzip CRC-32
    put("crc.nii.gz", bytes(crc), "gzip")
    huge = _header_patch(nii, tmp / "huge.nii", "<8h", 40, 3, 30000, 30000, 30000, 1, 1, 1, 1)
    out["huge.nii"] = (huge, "gib")
    put("huge.nii.gz", gzip.compress(huge.read_bytes()), "gib")
    out["dtype.nii"] = (_header_patch(nii, tmp / "dtype.nii", "<h", 70, 999), "not a readable")
    out["offset.nii"] = (_header_patch(nii, tmp / "offset.nii", "<f", 108, 1e12), "truncated")
    nan = _header_patch(nii, tmp / "nan_pixdim.nii", "<4f", 76, 1.0, float("nan"), 1.0, float("inf"))
    out["nan_pixdim.nii"] = (nan, "non-finite")
    (tmp / "dir.nii.gz").mkdir()
    out["dir.nii.gz"] = (tmp / "dir.nii.gz", "dicom")
    os.mkfifo(tmp / "fifo.nii.gz")
    out["fifo.nii.gz"] = (tmp / "fifo.nii.gz", "fifo")
    out["devzero"] = (Path("/dev/zero"), "device")
    out["devnull"] = (Path("/dev/null"), "device")
    return out


def test_each_bad_file_fails_its_item_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_nifti(tmp_path / "ok.nii.gz")
    bad = _bad_files(tmp_path)
    rows = [("ok", "T1w", str(good))] + [(f"s{i}", "T1w", str(p)) for i, (p, _) in enumerate(bad.values())]
    m = manifest(tmp_path, rows)
    out = tmp_path / "store"
    res = run_cli(capsys, "ingest", "--manifest", m, "--no-progress", "--json", tmp_path / "r.json", out)
    assert res.rc == 1  # the cohort goes on; the failures make it exit 1
    import json

    items = {r["obs_id"]: r for r in json.loads((tmp_path / "r.json").read_text())["items"]}
    for i, (name, (path, word)) in enumerate(bad.items()):
        item = items[f"s{i}"]
        assert item["status"] == "failed", (name, item)
        assert str(path) in (item["error"] + " " + str(item["source"])), (name, item)  # names the file
        assert word in item["error"].lower(), (name, item)
    assert items["ok"]["status"] == "written"
    from radiobject import RadiObject

    radi = RadiObject(str(out))
    assert radi["T1w"].obs_ids == ["ok"]  # only the good volume, exactly
    assert (radi["T1w"].by_subject("ok").to_numpy() == read_nifti(good).array).all()


@pytest.mark.parametrize("name", ["dtype.nii", "nan_pixdim.nii", "huge.nii.gz", "crc.nii.gz", "trunc.nii"])
def test_reader_typed(tmp_path: Path, name: str) -> None:
    path, word = _bad_files(tmp_path)[name]
    with pytest.raises(NiftiReadError) as info:
        read_nifti(path)
    assert str(path) in str(info.value) and word in str(info.value).lower()


def test_nul_byte_in_manifest_path_names_item(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_nifti(tmp_path / "ok.nii.gz")
    m = tmp_path / "m.csv"
    m.write_bytes(b"subject_id,collection,path\ns1,T1w," + str(good).encode() + b"\x00x\n")
    res = run_cli(capsys, "ingest", "--manifest", m, "--no-progress", tmp_path / "s")
    assert res.rc == 1 and "T1w/s1" in res.out + res.err and "null byte" in res.out + res.err
    assert not (tmp_path / "s").exists()


def test_symlink_loop_in_cohort_folder_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "c" / "sub-01"
    folder.mkdir(parents=True)
    write_nifti(folder / "sub-01_T1w.nii.gz")
    (folder / "loop").symlink_to(folder)
    res = run_cli(
        capsys,
        "ingest",
        "--images",
        f"T1w={tmp_path}/c/*/*_T1w.nii.gz",
        "--subject-pattern",
        r"(sub-\d+)",
        "--no-progress",
        tmp_path / "s",
    )
    assert res.rc == 0, res.err
    from radiobject import RadiObject

    assert RadiObject(str(tmp_path / "s"))["T1w"].obs_ids == ["sub-01"]


def test_dicom_folder_of_non_dicom_and_without_pixels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pydicom = pytest.importorskip("pydicom")

    junk = tmp_path / "junk" / "sub1"
    junk.mkdir(parents=True)
    for i in range(3):
        (junk / f"f{i}.dcm").write_bytes(os.urandom(300))
    res = run_cli(capsys, "ingest", "--dicom-root", tmp_path / "junk", "--no-progress", tmp_path / "s1")
    assert res.rc in (1, 2) and "sub1" in res.out + res.err and not (tmp_path / "s1").exists()
    nopix = tmp_path / "nopix" / "sub1"
    nopix.mkdir(parents=True)
    for i in range(3):
        ds = mr_slice(i)
        ds.PixelSpacing, ds.Rows, ds.Columns = [1, 1], 4, 4
        ds.save_as(nopix / f"f{i}.dcm", enforce_file_format=True)
    assert pydicom.dcmread(nopix / "f0.dcm").get("PixelData") is None
    res = run_cli(capsys, "ingest", "--dicom-root", tmp_path / "nopix", "--no-progress", tmp_path / "s2")
    assert res.rc in (1, 2) and str(nopix) in res.out + res.err and not (tmp_path / "s2").exists()


def test_tiff_truncated_absurd_empty_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np = pytest.importorskip("numpy")
    tifffile = pytest.importorskip("tifffile")
    good = tmp_path / "g.tif"
    tifffile.imwrite(good, np.zeros((64, 64), np.uint8))
    raw = good.read_bytes()
    (tmp_path / "trunc.tif").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + os.urandom(300))
    big = bytearray(raw)
    with tifffile.TiffFile(good) as t:
        for tag in t.pages[0].tags.values():
            if tag.code in (256, 257):  # ImageWidth / ImageLength
                struct.pack_into(
                    "<H" if tag.dtype == 3 else "<I", big, tag.valueoffset, 65000 if tag.dtype == 3 else 4_000_000_000
                )
    (tmp_path / "big.tif").write_bytes(bytes(big))
    os.mkfifo(tmp_path / "fifo.tif")
    for name in ("trunc.tif", "empty.tif", "junk.tif", "big.tif", "fifo.tif"):
        out = tmp_path / f"o_{name}"
        res = run_cli(capsys, "convert-tiff", tmp_path / name, "-o", out, "--no-progress")
        assert res.rc == 1, (name, res.err)
        assert str(tmp_path / name) in res.out + res.err, (name, res.out + res.err)
        assert not out.exists() or not any(out.iterdir()), name  # nothing that looks complete


def test_tiff_size_check_keeps_honest_packed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np = pytest.importorskip("numpy")
    tifffile = pytest.importorskip("tifffile")
    from radiobject.formats.tiff import read_tiff

    bits = np.random.default_rng(0).random((100, 120)) > 0.5
    tifffile.imwrite(tmp_path / "bits.tif", bits)  # 1 bit per pixel: 8x smaller than its bool array
    got = np.asarray(read_tiff(tmp_path / "bits.tif").array).squeeze()
    assert np.array_equal(got.T, tifffile.imread(tmp_path / "bits.tif"))
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((512, 512), np.uint16), compression="zlib")  # ratio ~ 500
    assert read_tiff(tmp_path / "z.tif").array.shape[:2] == (512, 512)
