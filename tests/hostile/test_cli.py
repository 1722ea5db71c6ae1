"""Hostile manifests, IDs and output folders through the CLI: one ``error:`` line naming the file
(exit 2) or a failed item naming it (exit 1); never a traceback, never a write outside OUT."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from radiobject import RadiObject
from radiobject.cli import main as cli_main
from radiobject.ingest.sample import SampleCohort
from tests.hostile.conftest import error_line, run_cli, write_nifti

pytestmark = pytest.mark.timeout(60)

H = b"subject_id,collection,path\n"


def _ingest(capsys: pytest.CaptureFixture[str], tmp: Path, data: bytes, name: str = "m.csv", *extra: object):
    m = tmp / name
    m.write_bytes(data)
    return run_cli(capsys, "ingest", "--manifest", m, "--no-progress", *extra, tmp / "out"), m


@pytest.mark.parametrize(
    "case",
    ["empty", "missing_column", "latin1", "utf16", "binary", "unclosed_quote", "tsv_named_csv", "garbage_parquet"],
)
def test_bad_manifest_one_line_naming_file(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    g = str(write_nifti(tmp_path / "g.nii.gz")).encode()
    data, name = {
        "empty": (b"", "m.csv"),
        "missing_column": (b"subject_id,path\ns1," + g + b"\n", "m.csv"),
        "latin1": (H + "Jos\xe9,T1w,".encode("latin-1") + g + b"\n", "m.csv"),
        "utf16": ((H + b"s1,T1w," + g + b"\n").decode().encode("utf-16"), "m.csv"),
        "binary": (bytes(range(256)) * 10, "m.csv"),
        "unclosed_quote": (H + b'"s1,T1w,' + g + b"\n", "m.csv"),
        "tsv_named_csv": (b"subject_id\tcollection\tpath\ns1\tT1w\t" + g + b"\n", "m.csv"),
        "garbage_parquet": (b"PAR1garbagePAR1", "m.parquet"),
    }[case]
    res, m = _ingest(capsys, tmp_path, data, name)
    assert res.rc == 2 and str(m) in error_line(res), res.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sid", ["a/b", "..", ".", "a" * 5000, "s\u202e1", " s1 ", "s\x001"])
def test_hostile_subject_ids_refused(tmp_path: Path, sid: str, capsys: pytest.CaptureFixture[str]) -> None:
    g = str(write_nifti(tmp_path / "g.nii.gz")).encode()
    res, _ = _ingest(capsys, tmp_path, H + sid.encode() + b",T1w," + g + b"\n")
    assert res.rc == 1 and "invalid subject id" in res.out + res.err
    assert not (tmp_path / "out").exists()
    assert sorted(os.listdir(tmp_path)) == ["g.nii.gz", "m.csv"]  # nothing written anywhere


@pytest.mark.parametrize("coll", ["a/b", ".."])
def test_hostile_collection_and_obs_ids(tmp_path: Path, coll: str, capsys: pytest.CaptureFixture[str]) -> None:
    g = str(write_nifti(tmp_path / "g.nii.gz")).encode()
    res, _ = _ingest(capsys, tmp_path, H + b"s1," + coll.encode() + b"," + g + b"\n")
    assert res.rc == 1 and "invalid collection name" in res.out + res.err
    res, _ = _ingest(capsys, tmp_path, b"subject_id,collection,path,obs_id\ns1,T1w," + g + b",../../x\n", "m2.csv")
    assert res.rc == 1 and "invalid obs_id" in res.out + res.err
    assert not (tmp_path / "out").exists()


def test_20k_duplicate_rows_refused_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = str(write_nifti(tmp_path / "g.nii.gz")).encode()
    res, m = _ingest(capsys, tmp_path, H + (b"s1,T1w," + g + b"\n") * 20000)
    line = error_line(res)
    assert res.rc == 2 and str(m) in line and "duplicate" in line and len(line) < 1000


def test_manifest_paths_missing_fifo_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = str(write_nifti(tmp_path / "g.nii.gz")).encode()
    os.mkfifo(tmp_path / "pipe.nii.gz")
    rows = [
        b"ok,T1w," + g,
        b"s1,T1w,/nonexistent/x.nii.gz",
        b"s2,T1w,pipe.nii.gz",
        b"s3,T1w,/dev/zero",
        b"s4,T1w,../../../../../../../nonexistent.nii.gz",
        b"s5,T1w," + str(tmp_path).encode(),
    ]
    res, _ = _ingest(capsys, tmp_path, H + b"\n".join(rows) + b"\n")
    text = res.out + res.err
    assert res.rc == 1
    for word in ("does not exist", "FIFO", "device"):
        assert word in text
    assert RadiObject(str(tmp_path / "out"))["T1w"].obs_ids == ["ok"]


def test_bom_crlf_and_na_subject_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = str(write_nifti(tmp_path / "g.nii.gz")).encode()
    parts = tmp_path / "participants.tsv"
    parts.write_bytes(b"participant_id\tage\r\ns1\tn/a\r\n")
    res, _ = _ingest(
        capsys,
        tmp_path,
        b"\xef\xbb\xbf" + H.replace(b"\n", b"\r\n") + b"s1,T1w," + g + b"\r\n",
        "m.csv",
        "--subjects",
        parts,
    )
    assert res.rc == 0, res.err
    radi = RadiObject(str(tmp_path / "out"))
    assert radi.obs_subject_ids == ["s1"]
    assert radi.obs_meta["age"].isna().all()  # n/a is missing, not the text "n/a"


def test_subject_table_problems_name_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = str(write_nifti(tmp_path / "g.nii.gz")).encode()
    for name, data in (
        ("dup.tsv", b"participant_id\tage\ns1\t3\ns1\t4\n"),
        ("nocol.tsv", b"age\n3\n"),
        ("latin1.tsv", b"participant_id\tname\ns1\tJos\xe9\n"),
    ):
        (tmp_path / name).write_bytes(data)
        res, _ = _ingest(capsys, tmp_path, H + b"s1,T1w," + g + b"\n", "m.csv", "--subjects", tmp_path / name)
        assert res.rc == 2 and str(tmp_path / name) in error_line(res), (name, res.err)
        assert not (tmp_path / "out").exists()


@pytest.fixture
def zstore(cohort: SampleCohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "store"
    assert run_cli(capsys, "ingest", "--manifest", cohort.manifest, "--no-progress", out).rc == 0
    return out


def test_export_outputs_stay_inside(zstore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = run_cli(capsys, "export", zstore, afile)
    assert res.rc == 2 and str(afile) in error_line(res) and afile.read_text() == "x"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.nii.gz").write_text("victim")
    out = tmp_path / "exp"
    (out / "T1w").mkdir(parents=True)
    os.symlink(outside / "victim.nii.gz", out / "T1w" / "sub-01.nii.gz")
    os.symlink(outside, out / "FLAIR")
    res = run_cli(capsys, "export", zstore, out)
    assert res.rc in (1, 2) and "symbolic link" in res.out + res.err
    assert sorted(os.listdir(outside)) == ["victim.nii.gz"] and (outside / "victim.nii.gz").read_text() == "victim"


def test_qc_output_never_through_a_link_or_into_a_folder(
    zstore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    res = run_cli(capsys, "qc", zstore, "-o", tmp_path)
    assert res.rc == 2 and "folder" in error_line(res)
    outside = tmp_path / "outside"
    outside.mkdir()
    link = tmp_path / "qc.png"
    os.symlink(outside / "victim.png", link)
    res = run_cli(capsys, "qc", zstore, "-o", link)
    assert res.rc == 0, res.err
    assert os.listdir(outside) == [] and link.is_file() and not link.is_symlink()
    assert link.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".qc.png.tmp")]
    res = run_cli(capsys, "qc", zstore, "-o", tmp_path / "no" / "such" / "q.png")
    assert res.rc == 2 and str(tmp_path / "no") in error_line(res)


def test_store_locked_by_another_process(
    zstore: Path, cohort: SampleCohort, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\nfrom radiobject.storage.locks import write_lock\n"
                "from radiobject.storage.options import StorageOptions\n"
                f"with write_lock({str(zstore)!r}, StorageOptions()):\n    print('held', flush=True)\n"
                "    time.sleep(30)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        radi = RadiObject(str(zstore))  # readers are never blocked by a writer
        assert len(radi["T1w"].by_subject("sub-01").to_numpy()) > 0
        assert run_cli(capsys, "verify", zstore).rc == 0
    finally:
        holder.kill()
        holder.wait()


def test_any_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(args: object) -> int:
        raise RuntimeError("boom\nsecond line")

    parser = cli_main.build_parser()
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["info"].set_defaults(func=boom)  # type: ignore[union-attr]
    res = run_cli(capsys, "info", "x")
    assert res.rc == 2 and error_line(res) == "error: internal error (RuntimeError): boom second line"


def test_convert_tiff_without_tiffs_names_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "d.tif").mkdir()
    for src in (tmp_path / "empty", tmp_path / "d.tif"):
        res = run_cli(capsys, "convert-tiff", src, "-o", tmp_path / "o", "--no-progress")
        assert res.rc == 2 and str(src) in error_line(res)
    res = run_cli(capsys, "convert-tiff", tmp_path / "nope.tif", "-o", tmp_path / "o", "--no-progress")
    assert res.rc == 2 and str(tmp_path / "nope.tif") in error_line(res)


def test_ingest_into_store_locked_by_another_process(
    zstore: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys

    monkeypatch.setenv("RADIOBJECT_LOCK_TIMEOUT", "2")
    g = write_nifti(tmp_path / "new.nii.gz")
    m = tmp_path / "new.csv"
    m.write_text(f"subject_id,collection,path\nsub-09,T1w,{g}\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import time\nfrom radiobject.storage.locks import write_lock\nfrom radiobject.storage.options import "
                f"StorageOptions\nwith write_lock({str(zstore / 'collections' / 'T1w')!r}, StorageOptions()):\n"
                "    print('held', flush=True)\n    time.sleep(30)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:  # writers of one collection are serialized: the second waits (bounded), then fails typed
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        res = run_cli(capsys, "ingest", "--manifest", m, "--no-progress", zstore)
        assert res.rc in (1, 2) and str(zstore) in res.out + res.err and "lock" in (res.out + res.err).lower()
        assert "sub-09" not in RadiObject(str(zstore))["T1w"].obs_subject_ids
    finally:
        holder.kill()
        holder.wait()
    assert run_cli(capsys, "ingest", "--manifest", m, "--no-progress", zstore).rc == 0  # lock gone: it resumes
    assert "sub-09" in RadiObject(str(zstore)).obs_subject_ids
    assert run_cli(capsys, "verify", zstore).rc == 0
