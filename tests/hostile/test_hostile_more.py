"""More hostile inputs, found by a second hostile pass: manifests and subject tables pandas would
misread, DICOM with non-finite rescale, 1D / 2D / 6D / complex NIfTI, outputs aimed into a store,
report paths, bad regexes and URIs, absurd sizes, and re-ingest over a deleted volume. Each ends
in a typed error naming the file / store (or correct data), never a traceback or a damaged store."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiobject import RadiObject
from radiobject.errors import DicomError, StoreError, SubjectTableError
from radiobject.formats.nifti import read_nifti
from radiobject.ingest.manifest import plan_from_manifest
from radiobject.model.label_maps import LabelMap
from tests.hostile._dicom import mr_slice
from tests.hostile.conftest import error_line, run_cli, write_nifti

pytestmark = pytest.mark.timeout(120)

H = "subject_id,collection,path\n"


def _ingest(capsys: pytest.CaptureFixture[str], tmp: Path, text: str | None, name: str = "m.csv", *extra: object):
    m = tmp / name
    if text is not None:
        m.write_text(text)
    return run_cli(capsys, "ingest", "--manifest", m, "--no-progress", *extra, tmp / "out"), m


@pytest.fixture
def zstore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A finished zarr store: 2 subjects x (T1w, seg)."""
    rows = []
    for sid in ("s1", "s2"):
        write_nifti(tmp_path / f"{sid}_T1w.nii.gz")
        seg = tmp_path / f"{sid}_seg.nii.gz"
        import nibabel as nib

        nib.save(nib.Nifti1Image((np.arange(504).reshape(8, 9, 7) % 3).astype(np.uint8), np.diag([1, 1, 1.2, 1])), seg)
        rows += [f"{sid},T1w,{tmp_path / f'{sid}_T1w.nii.gz'}", f"{sid},seg,{seg}"]
    (tmp_path / "m.csv").write_text(H + "\n".join(rows) + "\n")
    out = tmp_path / "store"
    assert run_cli(capsys, "ingest", "--manifest", tmp_path / "m.csv", "--no-progress", out).rc == 0
    return out


# ------------------------------------------------------------------ manifests and subject tables
@pytest.mark.parametrize(
    ("header", "word"),
    [
        ("subject_id,collection,path,path", "duplicate column"),  # pandas would use the first, silently
        ("subject_id,subject_id,collection,path", "duplicate column"),
        ("subject_id,collection,path,obs_subject_id", "obs_subject_id"),  # was an internal error after writing
    ],
)
def test_manifest_header_problems_refused_before_writing(
    tmp_path: Path, header: str, word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    g = write_nifti(tmp_path / "g.nii.gz")
    res, m = _ingest(capsys, tmp_path, f"{header}\ns1,T1w,{g},{g}\n")
    line = error_line(res)
    assert res.rc == 2 and str(m) in line and word in line, res.err
    assert not (tmp_path / "out").exists()


def test_parquet_list_column_and_float_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g, g2 = write_nifti(tmp_path / "g.nii.gz"), write_nifti(tmp_path / "g2.nii.gz")
    pd.DataFrame({"subject_id": ["a"], "collection": ["T1w"], "path": [str(g)], "tags": [[1, 2]]}).to_parquet(
        tmp_path / "l.parquet"
    )
    res, m = _ingest(capsys, tmp_path, None, "l.parquet")
    assert res.rc == 2 and str(m) in error_line(res) and "'tags'" in error_line(res)  # was a TypeError
    assert not (tmp_path / "out").exists()
    # a Parquet ID column with a missing value is float: 1.0 is subject "1", the missing one a problem
    pd.DataFrame({"subject_id": [1.0, None], "collection": ["T1w"] * 2, "path": [str(g), str(g2)]}).to_parquet(
        tmp_path / "f.parquet"
    )
    res, _ = _ingest(capsys, tmp_path, None, "f.parquet")
    assert res.rc == 1 and "no subject ID given" in res.out
    assert RadiObject(str(tmp_path / "out")).obs_subject_ids == ["1"]


def test_empty_collection_cell_is_a_problem_not_a_collection_named_nan(tmp_path: Path) -> None:
    g = write_nifti(tmp_path / "g.nii.gz")
    (tmp_path / "m.csv").write_text(H + f"s1,,{g}\ns2,n/a,{g}\ns3,T1w,{g}\n")
    plan = plan_from_manifest(tmp_path / "m.csv")
    assert [t.collection for t in plan.tasks] == ["T1w"]
    assert [p.reason for p in plan.problems] == ["no collection given"] * 2


@pytest.mark.parametrize(
    ("name", "make", "word"),
    [
        ("nan.tsv", lambda p: p.write_text("participant_id\tage\ns1\t3\n\t4\nn/a\t5\n"), "without a subject ID"),
        ("two.tsv", lambda p: p.write_text("subject_id\tobs_subject_id\tage\ns1\tzz\t3\n"), "obs_subject_id"),
        (
            "f.parquet",
            lambda p: pd.DataFrame({"participant_id": [1.0, None], "age": [3, 4]}).to_parquet(p),
            "without a subject ID",
        ),
    ],
)
def test_subject_table_missing_or_second_id_column(
    tmp_path: Path, name: str, make: object, word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    g = write_nifti(tmp_path / "g.nii.gz")
    make(tmp_path / name)  # type: ignore[operator]
    (tmp_path / "m.csv").write_text(H + f"s1,T1w,{g}\n")
    with pytest.raises(SubjectTableError) as info:
        plan_from_manifest(tmp_path / "m.csv", subjects=tmp_path / name)
    assert str(tmp_path / name) in str(info.value) and word in str(info.value)
    res, _ = _ingest(capsys, tmp_path, None, "m.csv", "--subjects", tmp_path / name)
    assert res.rc == 2 and word in error_line(res) and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ image files
def test_dicom_non_finite_rescale_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pydicom")

    from radiobject.formats.dicom import read_dicom_series

    folder = tmp_path / "root" / "sub1"
    folder.mkdir(parents=True)
    for i in range(3):
        ds = mr_slice(i)
        ds.PixelSpacing, ds.Rows, ds.Columns, ds.SamplesPerPixel = [1, 1], 4, 5, 1
        ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = "MONOCHROME2", 16, 16, 15
        ds.PixelRepresentation, ds.RescaleSlope, ds.RescaleIntercept = 1, "nan", 0
        ds.PixelData = np.arange(20, dtype=np.int16).tobytes()
        ds.save_as(folder / f"f{i}.dcm", enforce_file_format=True)
    with pytest.raises(DicomError) as info:  # was: a volume of NaN, stored and reported written
        read_dicom_series(str(folder))
    assert "RescaleSlope" in str(info.value) and str(folder) in str(info.value)
    res = run_cli(capsys, "ingest", "--dicom-root", tmp_path / "root", "--no-progress", tmp_path / "s")
    assert res.rc == 1 and "RescaleSlope" in res.out


def test_1d_2d_nifti_are_stored_3d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = write_nifti(tmp_path / "g.nii")
    raw = bytearray(g.read_bytes())
    struct.pack_into("<h", raw, 40, 2)  # dim[0] = 2: the header says 8 x 9
    (tmp_path / "d2.nii").write_bytes(bytes(raw))
    img = read_nifti(tmp_path / "d2.nii")
    assert img.array.shape == (8, 9, 1)
    # the file's first 8 x 9 voxels (Fortran order): the z = 0 plane of the 8 x 9 x 7 ramp
    assert np.array_equal(img.array[..., 0], np.arange(504, dtype=np.int16).reshape(8, 9, 7)[..., 0])
    res, _ = _ingest(capsys, tmp_path, H + f"s1,T1w,{tmp_path / 'd2.nii'}\n")
    assert res.rc == 0, res.err
    out = tmp_path / "out"
    assert RadiObject(str(out))["T1w"].by_subject("s1").shape == (8, 9, 1)
    assert run_cli(capsys, "qc", out, "-o", tmp_path / "q.png").rc == 0  # was an internal IndexError


@pytest.mark.parametrize(
    ("shape", "dtype", "word"), [((2,) * 6, np.int16, "at most 5"), ((3, 4, 5), np.complex64, "complex")]
)
def test_zarr_unstorable_images_named_clearly(
    tmp_path: Path, shape: tuple[int, ...], dtype: type, word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import nibabel as nib

    a = np.arange(int(np.prod(shape))).reshape(shape).astype(dtype)
    nib.save(nib.Nifti1Image(a, np.eye(4), dtype=a.dtype), str(tmp_path / "x.nii"))
    res, _ = _ingest(capsys, tmp_path, H + f"s1,T1w,{tmp_path / 'x.nii'}\n")
    assert res.rc == 1 and word in res.out and str(tmp_path / "x.nii") in res.out  # was tensorstore's JSON error
    assert "StoreError" in res.out and "Error parsing" not in res.out


def test_convert_tiff_int64(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tifffile = pytest.importorskip("tifffile")
    zarr = pytest.importorskip("zarr")
    data = np.arange(2 * 16 * 16, dtype=np.int64).reshape(2, 16, 16)
    tifffile.imwrite(tmp_path / "i.tif", data)  # tifffile's int64 dtype object is numpy's longlong
    res = run_cli(capsys, "convert-tiff", tmp_path / "i.tif", "-o", tmp_path / "o", "--no-progress")
    assert res.rc == 0, res.out + res.err  # was: ValueError: No Zarr data type found ...
    got = zarr.open_group(str(tmp_path / "o" / "i.ome.zarr"), mode="r")["0"][:]
    assert np.array_equal(got.reshape(data.shape), data)


# ------------------------------------------------------------------ where outputs go
def test_outputs_inside_a_store_refused(zstore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = (zstore / "radiobject.json").read_bytes()
    cmds = [
        ["qc", zstore, "-o", zstore / "radiobject.json"],  # overwrote the store's marker with a PNG
        ["qc", zstore, "-o", zstore / "collections" / "q.png"],
        ["export", zstore, zstore],
        ["export", zstore, zstore / "collections" / "T1w"],
        ["export-nnunet", zstore, zstore / "nn", "--channels", "T1w", "--label", "seg"],
        ["sample-cohort", zstore / "demo"],
        ["ingest", "--manifest", tmp_path / "m.csv", "--no-progress", zstore / "collections" / "inner"],
        ["ingest", "--manifest", tmp_path / "m.csv", "--json", zstore / "r.json", "--no-progress", tmp_path / "b"],
    ]
    before = sorted(str(p.relative_to(zstore)) for p in zstore.rglob("*"))
    for cmd in cmds:
        res = run_cli(capsys, *cmd)
        assert res.rc == 2 and "inside the radiobject store" in error_line(res), (cmd, res.err)
    assert (zstore / "radiobject.json").read_bytes() == marker
    assert sorted(str(p.relative_to(zstore)) for p in zstore.rglob("*")) == before
    assert not (tmp_path / "b").exists()
    assert run_cli(capsys, "verify", zstore).rc == 0


def test_report_path_checked_before_ingest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = write_nifti(tmp_path / "g.nii.gz")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    text = H + f"s1,T1w,{g}\n"
    for bad in (tmp_path / "afile" / "r.json", tmp_path / "nodir" / "r.json", tmp_path / "adir"):
        res, _ = _ingest(capsys, tmp_path, text, "m.csv", "--json", bad)
        assert res.rc == 2 and str(bad) in error_line(res), res.err
        assert not (tmp_path / "out").exists()  # refused before anything was ingested
    res, _ = _ingest(capsys, tmp_path, text, "m.csv", "--json", tmp_path / "out" / "r.json")  # inside OUT: fine
    assert res.rc == 0 and (tmp_path / "out" / "r.json").is_file()
    assert not [p for p in tmp_path.rglob("*.tmp-*")]


def test_qc_output_and_subject_count_checked(
    zstore: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    res = run_cli(capsys, "qc", zstore, "-o", "")
    assert res.rc == 2 and "empty" in error_line(res)
    assert sorted(p.name for p in tmp_path.parent.iterdir() if p.name.startswith(f".{tmp_path.name}")) == []
    with pytest.raises(SystemExit):  # -1 would silently mean "all but the last"
        run_cli(capsys, "qc", zstore, "--max-subjects", "-1", "-o", tmp_path / "q.png")
    shutil.rmtree(zstore / "collections" / "T1w" / "obs")  # a collection without its obs table
    res = run_cli(capsys, "qc", zstore, "--collections", "T1w", "-o", tmp_path / "q.png")
    assert "internal error" not in res.err


# ------------------------------------------------------------------ arguments
def test_subject_pattern_and_store_uri_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_nifti(tmp_path / "sub-01_T1w.nii.gz")
    glob = f"T1w={tmp_path}/*_T1w.nii.gz"
    with pytest.raises(SystemExit):  # one usage error, not one failed item per file
        run_cli(capsys, "ingest", "--images", glob, "--subject-pattern", "([", tmp_path / "o")
    res = run_cli(capsys, "ingest", "--images", glob, "--subject-pattern", "(x)?", "--no-progress", tmp_path / "o")
    assert res.rc == 1 and "empty subject ID" in res.out + res.err  # was an internal TypeError
    for uri in ("s3://", "s3:///x", ""):
        res = run_cli(capsys, "ingest", "--images", glob, "--no-progress", uri)
        assert res.rc == 2 and "internal error" not in res.err and error_line(res), uri
    assert not (tmp_path / "o").exists()


def test_absurd_sizes_refused_up_front(zstore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_cli(capsys, "sample-cohort", tmp_path / "big", "--shape", "100000,100000,100000")
    assert res.rc == 2 and "GiB" in error_line(res) and not (tmp_path / "big").exists()  # was a MemoryError
    res = run_cli(capsys, "resample", zstore, "T1w", "--spacing", "0.001,0.001,0.001", "--no-progress")
    assert res.rc == 2 and "GiB" in error_line(res) and "T1w" in error_line(res)
    res = run_cli(capsys, "resample", zstore, "T1w", "--spacing", "inf,1,1", "--no-progress")
    assert res.rc == 2 and "finite" in error_line(res)
    res = run_cli(capsys, "resample", zstore, "T1w", "--spacing", "2,2,2", "--out", "T1w", "--no-progress")
    assert res.rc == 2 and "source collection" in error_line(res)  # was rc 0, nothing done
    assert sorted(RadiObject(str(zstore)).collection_names) == ["T1w", "seg"]


@pytest.mark.parametrize("spec", ["x=y", "1=", "1=a,1=b"])
def test_label_map_text_checked(spec: str) -> None:
    with pytest.raises(ValueError, match="label map"):
        LabelMap.parse(spec)
    assert LabelMap.parse("1=a, 2=b").names == {1: "a", 2: "b"}


# ------------------------------------------------------------------ re-ingest
def test_reingest_rewrites_a_deleted_volume(zstore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    want = RadiObject(str(zstore))["T1w"].by_subject("s2").to_numpy()
    shutil.rmtree(zstore / "collections" / "T1w" / "volumes" / "s2")
    assert run_cli(capsys, "verify", zstore).rc == 1
    res = run_cli(capsys, "ingest", "--manifest", tmp_path / "m.csv", "--no-progress", zstore)
    assert res.rc == 0 and "stored array cannot be read" in res.out  # was "already present", store left broken
    assert run_cli(capsys, "verify", zstore).rc == 0
    assert np.array_equal(RadiObject(str(zstore))["T1w"].by_subject("s2").to_numpy(), want)


def test_writer_names_the_source(tmp_path: Path) -> None:
    from radiobject.formats.image import ImageData
    from radiobject.model.options import WriteOptions
    from radiobject.model.writer import write_image
    from radiobject.storage.options import StorageOptions
    from radiobject.storage.registry import get_backend

    image = ImageData(np.zeros((2, 2, 2), np.complex64), np.eye(4), {}, "/data/x.nii")
    with pytest.raises(StoreError, match="/data/x.nii.*complex"):
        write_image(str(tmp_path / "v"), image, get_backend("zarr", StorageOptions()), WriteOptions())
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("backend", ["zarr", "tiledb"])
def test_a_deleted_collection_is_an_error_not_an_absence(tmp_path: Path, backend: str) -> None:
    import shutil

    import numpy as np

    from radiobject import ImageData, RadiObject, WriteOptions
    from radiobject.cli.main import main
    from radiobject.errors import CorruptDataError

    uri = str(tmp_path / "s")
    img = {f"s{i}": ImageData(np.full((4, 4, 4), i, np.int16), np.eye(4)) for i in range(2)}
    seg = {k: ImageData((v.array > 0).astype(np.uint8), np.eye(4)) for k, v in img.items()}
    RadiObject.from_images(uri, {"T1w": img, "seg": seg}, options=WriteOptions(backend=backend))
    assert RadiObject(uri).collection_names == ["T1w", "seg"]
    assert main(["verify", uri, "--quick"]) == 0
    shutil.rmtree(Path(uri, "collections", "seg"))
    with pytest.raises(CorruptDataError, match="'seg' is recorded") as info:
        _ = RadiObject(uri).collection_names
    assert info.value.store == uri and "collections/seg" in info.value.part
    assert main(["verify", uri, "--quick"]) == 1
    assert main(["info", uri]) != 0


@pytest.mark.parametrize("backend", ["zarr", "tiledb"])
def test_a_deleted_catalog_is_an_error_not_an_empty_collection(tmp_path: Path, backend: str) -> None:
    from radiobject import ImageData, VolumeCollection, WriteOptions
    from radiobject.cli.main import main
    from radiobject.errors import CorruptDataError

    uri = str(tmp_path / "s")
    img = {f"s{i}": ImageData(np.full((4, 4, 4), i, np.int16), np.eye(4)) for i in range(2)}
    RadiObject.from_images(uri, {"T1w": img}, options=WriteOptions(backend=backend))
    empty = VolumeCollection.create(str(tmp_path / "empty"), options=WriteOptions(backend=backend))
    assert len(VolumeCollection(empty.uri)) == 0  # a new collection is empty, and not damaged
    shutil.rmtree(Path(uri, "collections", "T1w", "obs"))
    with pytest.raises(CorruptDataError, match="obs table") as info:
        len(RadiObject(uri).T1w)
    assert info.value.collection == "T1w" and info.value.part == "obs"
    assert main(["verify", uri, "--quick"]) == 1
