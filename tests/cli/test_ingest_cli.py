"""``radiobject sample-cohort`` and ``radiobject ingest``: arguments, summary, JSON, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from radiobject import RadiObject
from radiobject.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["sample-cohort", str(tmp_path / "c"), "--subjects", "3", "--shape", "12,14,10"]) == 0
    assert "wrote 3 subjects" in capsys.readouterr().out
    return tmp_path / "c"


def test_sample_cohort_manifest_agrees_with_file_names(sample: Path, tmp_path: Path) -> None:
    import pandas as pd

    m = pd.read_csv(sample / "manifest.csv", dtype=str)
    assert list(m.columns) == ["subject_id", "collection", "path"]  # no session: the file names carry none
    assert all(p == f"{s}/anat/{s}_{c}.nii.gz" for s, c, p in m[["subject_id", "collection", "path"]].to_numpy())
    store = str(tmp_path / "store")
    args = ["ingest", store, "--manifest", str(sample / "manifest.csv"), "--subjects", str(sample / "participants.csv")]
    assert main([*args, "--no-progress"]) == 0
    assert "session" not in RadiObject(store).obs_meta.columns


def test_ingest_manifest(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str) -> None:
    out = str(tmp_path / "store")
    rc = main(
        [
            "ingest",
            out,
            "--manifest",
            str(sample / "manifest.csv"),
            "--subjects",
            str(sample / "participants.csv"),
            "--backend",
            backend,
            "--workers",
            "2",
            "--compression",
            "zstd",
            "--level",
            "5",
            "--chunks",
            "8,8,8",
            "--validate-alignment",
            "--json",
            str(tmp_path / "r.json"),
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "T1w" in text and "total" in text and "ingested" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and report["counts"] == {"written": 9, "replaced": 0, "present": 0, "failed": 0}
    radi = RadiObject(out)
    assert radi.backend_name == backend and len(radi) == 3 and "age" in radi.obs_meta.columns
    vol = radi["T1w"].iloc[0]
    assert vol.chunks == (8, 8, 8) and vol.info.codec.name == "zstd" and vol.info.codec.level == 5
    # second run: everything already present, exit 0
    assert main(["ingest", out, "--manifest", str(sample / "manifest.csv"), "--no-progress"]) == 0
    assert "9" in capsys.readouterr().out


def test_ingest_globs_and_failures(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (sample / "sub-02/anat/sub-02_T1w.nii.gz").write_text("garbage")
    rc = main(
        [
            "ingest",
            str(tmp_path / "s"),
            "--images",
            f"T1w={sample}/*/anat/*_T1w.nii.gz",
            f"seg={sample}/*/anat/*_seg.nii.gz",
            "--subject-pattern",
            r"(sub-\d+)_",
            "--canonical",
            "--json",
            str(tmp_path / "r.json"),
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 1
    assert "failed (1)" in text and "T1w/sub-02" in text and "wrong format" in text
    items = json.loads((tmp_path / "r.json").read_text())["items"]
    assert [i["obs_id"] for i in items if i["status"] == "failed"] == ["sub-02"]
    assert RadiObject(str(tmp_path / "s"))["seg"].obs_subject_ids == ["sub-01", "sub-02", "sub-03"]


def test_ingest_fail_fast(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.remove(sample / "sub-03/anat/sub-03_FLAIR.nii.gz")
    rc = main(
        ["ingest", str(tmp_path / "s"), "--manifest", str(sample / "manifest.csv"), "--fail-fast", "--no-progress"]
    )
    assert rc == 1 and "aborted" in capsys.readouterr().out and not (tmp_path / "s").exists()


def test_ingest_bad_arguments(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["ingest", str(tmp_path / "s")])  # no source
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["ingest", str(tmp_path / "s"), "--images", "no-equals-sign"])
    with pytest.raises(SystemExit):
        main(["ingest", str(tmp_path / "s"), "--manifest", "m.csv", "--chunks", "1,2"])
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\n1,2\n")
    assert main(["ingest", str(tmp_path / "s"), "--manifest", str(bad)]) == 2
    assert "subject column" in capsys.readouterr().err


def test_readme_flow_as_subprocess(tmp_path: Path) -> None:
    """The README's main command: sample-cohort, ingest, info, through the installed entry point."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "radiobject.cli.main", *a],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    assert run("sample-cohort", "cohort", "--subjects", "2", "--shape", "10,10,10").returncode == 0
    r = run("ingest", "store", "--manifest", "cohort/manifest.csv", "--subjects", "cohort/participants.csv")
    assert r.returncode == 0, r.stderr
    assert "vol" in r.stderr  # the progress bar
    assert "total" in r.stdout
    r = run("info", "store")
    assert r.returncode == 0 and "2 subjects, 3 collections" in r.stdout


def test_changed_source_on_cli_and_verify_sources(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import nibabel as nib
    import numpy as np

    out = str(tmp_path / "store")
    args = ["ingest", out, "--manifest", str(sample / "manifest.csv"), "--no-progress"]
    assert main(args) == 0
    assert main(["verify", out, "--sources"]) == 0
    capsys.readouterr()
    seg = sample / "sub-02/anat/sub-02_seg.nii.gz"
    img = nib.load(str(seg))
    nib.save(nib.Nifti1Image(np.ones(img.shape, np.uint8), img.affine), str(seg))
    assert main(["verify", out, "--sources"]) == 1
    text = capsys.readouterr().out
    assert "seg/sub-02" in text and "sub-02_seg.nii.gz" in text
    assert main(["verify", out, "--sources", "--json"]) == 1
    assert [f["obs_id"] for f in json.loads(capsys.readouterr().out)["sources"]] == ["sub-02"]
    assert main([*args, "--on-changed", "error"]) == 1
    assert "SourceChangedError" in capsys.readouterr().out
    assert main([*args, "--on-changed", "skip"]) == 0
    assert main(args) == 0  # default: replace
    assert "replaced (source changed) (1)" in capsys.readouterr().out
    assert RadiObject(out).seg.loc["sub-02"].to_numpy().min() == 1
    assert main(["verify", out, "--sources"]) == 0


def test_typo_glob_and_foreign_folder_exit_2_without_a_store(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    assert main(["ingest", str(out), "--images", f"T1w={sample}/*/antomy/*_T1w.nii.gz", "--no-progress"]) == 2
    assert "matched no files" in capsys.readouterr().err and not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["ingest", str(mine), "--manifest", str(sample / "manifest.csv"), "--no-progress"]) == 2
    assert "not a radiobject store" in capsys.readouterr().err and os.listdir(mine) == ["notes.txt"]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("subject_id,collection,path\nG\xf6k,T1w,a.nii.gz\n".encode("latin-1"))
    assert main(["ingest", str(out), "--manifest", str(latin), "--no-progress"]) == 2
    assert "latin.csv:2" in capsys.readouterr().err and not out.exists()
