"""``radiobject ingest STORE --layout KIND DIR`` with ``ingest``'s other options: each one either
applies as on the plain ingest path (its effect is checked in the store or the report) or exits 2
with ``error: --FLAG does not apply with --layout (...)`` before anything is written; an option at
its parser default is never refused."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from radiobject import RadiObject
from radiobject.cli.layouts import LAYOUT_APPLIED, LAYOUT_REFUSED, layout_flag_error
from radiobject.cli.main import build_parser, main

LAS = np.diag([-0.8, 0.8, 2.0, 1.0])  # x runs right to left: --canonical flips it


def _save(path: Path, arr: np.ndarray, affine: np.ndarray = LAS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, affine), str(path))


def _nnunet(root: Path, n: int = 3) -> Path:
    """Cases C_000.. with channels T1, FLAIR (float32) and a uint8 label, uncompressed ``.nii``."""
    rng = np.random.default_rng(0)
    for i in range(n):
        for c in range(2):
            _save(root / "imagesTr" / f"C_{i:03d}_{c:04d}.nii", rng.normal(100, 20, (6, 5, 4)).astype(np.float32))
        seg = np.zeros((6, 5, 4), np.uint8)
        seg[1:3, 1:3, 1:3] = 1
        _save(root / "labelsTr" / f"C_{i:03d}.nii", seg)
    meta = {"channel_names": {"0": "T1", "1": "FLAIR"}, "labels": {"background": 0, "lesion": 1}}
    (root / "dataset.json").write_text(json.dumps({**meta, "numTraining": n, "file_ending": ".nii"}))
    return root


def _bids(root: Path) -> Path:
    """sub-01 with sessions pre and post, sub-02 with pre; a T1w each."""
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "toy", "BIDSVersion": "1.9.0"}))
    for sub, sessions in (("sub-01", ("pre", "post")), ("sub-02", ("pre",))):
        for ses in sessions:
            _save(root / sub / f"ses-{ses}" / "anat" / f"{sub}_ses-{ses}_T1w.nii.gz", np.zeros((4, 4, 3), np.float32))
    return root


def _msd_dicom(root: Path, write: Any, **kwargs: Any) -> Path:
    """An MSD task of one training case whose image is a DICOM series folder (no label)."""
    write(root / "imagesTr" / "case_00", **kwargs)
    ds = {"name": "dcm", "modality": {"0": "MR"}, "labels": {"0": "background"}}
    (root / "dataset.json").write_text(json.dumps({**ds, "training": [{"image": "./imagesTr/case_00"}]}))
    return root


def _ingest(out: Path, kind: str, ds: Path, *extra: str) -> int:
    return main(["ingest", str(out), "--layout", kind, str(ds), "--no-progress", *extra])


def test_every_ingest_option_is_applied_or_refused() -> None:
    dests = set(build_parser().parse_args(["ingest", "s", "--layout", "msd", "d"]).option_defaults)
    assert not LAYOUT_APPLIED & set(LAYOUT_REFUSED)
    assert dests - LAYOUT_APPLIED == set(LAYOUT_REFUSED)  # a new ingest option must be placed in one
    assert LAYOUT_APPLIED - dests == {"command", "func"}  # no stale names


def test_defaults_are_never_refused(tmp_path: Path) -> None:
    argv = ["ingest", "s", "--layout", "msd", "d", "--obs-columns", "", "--dicom-collection-key", "description"]
    argv += ["--on-changed", "replace", "--workers", "2", "--executor", "thread", "--incomplete", "keep"]
    for kind in ("bids", "msd", "nnunet"):
        assert layout_flag_error(build_parser().parse_args(argv), kind) is None
    given = build_parser().parse_args([*argv, "--dicom-collection-key", "modality"])
    assert "--dicom-collection-key does not apply with --layout" in str(layout_flag_error(given, "msd"))


@pytest.mark.parametrize(
    "flag,value",
    [("--obs-columns", "age"), ("--subject-pattern", "(C_[0-9]+)"), ("--dicom-collection-key", "modality")],
)
def test_a_flag_that_does_not_apply_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    ds = _nnunet(tmp_path / "ds")
    assert _ingest(tmp_path / "s", "nnunet", ds, flag, value) == 2
    err = capsys.readouterr().err
    assert f"error: {flag} does not apply with --layout (" in err and LAYOUT_REFUSED[flag[2:].replace("-", "_")] in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("flag,value", [("--philips-scaling", "precise"), ("--resample-tilt", "exact")])
def test_dicom_reader_options_exit_2_for_bids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    ds = _bids(tmp_path / "bids")
    assert _ingest(tmp_path / "s", "bids", ds, flag, value) == 2
    want = f"error: {flag} does not apply with --layout bids (a BIDS dataset's images are NIfTI"
    assert want in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert _ingest(tmp_path / "s", "bids", ds) == 0


def test_philips_scaling_applies(tmp_path: Path) -> None:
    from tests.formats.dicom._synth import write_philips_mr

    scaling = {"rescale_slope": 2.0, "rescale_intercept": -5.0, "scale_slope": 0.5}
    ds = _msd_dicom(tmp_path / "Task01_Dcm", write_philips_mr, **scaling)
    report = tmp_path / "r.json"
    assert _ingest(tmp_path / "s", "msd", ds, "--philips-scaling", "precise", "--json", str(report)) == 0
    vol = RadiObject(str(tmp_path / "s"))["image"].loc["case_00"]
    assert vol.metadata["philips_scaling"]["mode"] == "precise" and vol.to_numpy().dtype == np.float32
    assert json.loads(report.read_text())["dicom_options"] == {"philips_scaling": "precise"}
    assert _ingest(tmp_path / "d", "msd", ds) == 0
    assert RadiObject(str(tmp_path / "d"))["image"].loc["case_00"].metadata["philips_scaling"]["mode"] == "display"


def test_resample_tilt_applies(tmp_path: Path) -> None:
    from tests.formats.dicom._synth import write_tilted_ct

    ds = _msd_dicom(tmp_path / "Task02_Ct", write_tilted_ct, tilt_deg=-14.0, steps_mm=[4.0] * 4, rows=12, cols=10)
    assert _ingest(tmp_path / "s", "msd", ds, "--resample-tilt", "exact") == 0
    vol = RadiObject(str(tmp_path / "s"))["image"].loc["case_00"]
    assert vol.metadata["tilt_correction"]["origin"] == "exact"
    assert _ingest(tmp_path / "raw", "msd", ds) == 0
    assert RadiObject(str(tmp_path / "raw"))["image"].loc["case_00"].metadata["resampled"] is None


def test_canonical_gives_ras(tmp_path: Path) -> None:
    ds = _nnunet(tmp_path / "ds", 2)
    assert _ingest(tmp_path / "raw", "nnunet", ds) == 0 and _ingest(tmp_path / "ras", "nnunet", ds, "--canonical") == 0
    raw, ras = RadiObject(str(tmp_path / "raw")), RadiObject(str(tmp_path / "ras"))
    for coll in ("T1", "label"):
        assert nib.aff2axcodes(raw[coll].loc["C_000"].affine) == ("L", "A", "S")
        assert nib.aff2axcodes(ras[coll].loc["C_000"].affine) == ("R", "A", "S")
        np.testing.assert_array_equal(ras[coll].loc["C_000"].to_numpy(), raw[coll].loc["C_000"].to_numpy()[::-1])


def test_lossy_applies_and_refuses_the_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = _nnunet(tmp_path / "ds", 2)
    codec = ["--compression", "blosc-zstd"]
    assert _ingest(tmp_path / "s", "nnunet", ds, *codec, "--lossy", "T1=bits:8") == 0
    radi = RadiObject(str(tmp_path / "s"))
    assert radi["T1"].loc["C_000"].metadata["lossy"]["setting"] == "keep_bits=8"
    assert "lossy" not in radi["FLAIR"].loc["C_000"].metadata and "lossy" not in radi["label"].loc["C_000"].metadata
    capsys.readouterr()
    assert _ingest(tmp_path / "bad", "nnunet", ds, *codec, "--lossy", "abs:2") == 2  # every collection: the label too
    assert "'label'" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_subjects_join_obs_meta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = _nnunet(tmp_path / "ds")
    table = tmp_path / "subjects.csv"
    table.write_text("subject_id,age\nC_000,30\nC_001,41\nC_002,52\n")
    assert _ingest(tmp_path / "s", "nnunet", ds, "--subjects", str(table)) == 0
    meta = RadiObject(str(tmp_path / "s")).obs_meta.set_index("obs_subject_id")
    assert meta.loc[["C_000", "C_001", "C_002"], "age"].tolist() == [30, 41, 52]
    table.write_text("subject_id,age\nX_1,30\n")  # joins no subject
    assert _ingest(tmp_path / "none", "nnunet", ds, "--subjects", str(table)) == 2
    assert "none of its 1 subject IDs" in capsys.readouterr().err and not (tmp_path / "none").exists()
    table.write_text("subject_id,age\nC_000,30\nC_001,41\nC_002,52\nC_009,60\n")  # a row without images
    assert _ingest(tmp_path / "strict", "nnunet", ds, "--subjects", str(table), "--incomplete", "error") == 1
    assert "C_009: no images" in capsys.readouterr().err and not (tmp_path / "strict").exists()


def test_subjects_join_bids_sessions_by_participant(tmp_path: Path) -> None:
    ds = _bids(tmp_path / "bids")
    table = tmp_path / "subjects.tsv"
    table.write_text("participant_id\tsite\nsub-01\tA\nsub-02\tB\n")
    assert _ingest(tmp_path / "s", "bids", ds, "--subjects", str(table)) == 0
    meta = RadiObject(str(tmp_path / "s")).obs_meta.set_index("obs_subject_id")
    assert meta.loc[["sub-01_ses-post", "sub-01_ses-pre", "sub-02_ses-pre"], "site"].tolist() == ["A", "A", "B"]


def test_fail_fast_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = _nnunet(tmp_path / "ds")
    _save(ds / "labelsTr" / "C_001.nii", np.zeros((6, 5, 3), np.uint8))  # one slice short: misaligned
    assert _ingest(tmp_path / "s", "nnunet", ds) == 1
    assert RadiObject(str(tmp_path / "s")).label.obs_ids == ["C_000", "C_002"]
    capsys.readouterr()
    assert _ingest(tmp_path / "ff", "nnunet", ds, "--fail-fast") == 1
    assert "--fail-fast: nothing written" in capsys.readouterr().out and not (tmp_path / "ff").exists()


def _items(report: Path) -> dict[str, str]:
    return {f"{i['collection']}/{i['obs_id']}": i["status"] for i in json.loads(report.read_text())["items"]}


def _rewrite_keeping_size_and_mtime(path: Path) -> None:
    st = path.stat()
    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) + 1, img.affine, img.header), str(path))
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_rehash_and_on_changed_apply(tmp_path: Path) -> None:
    ds = _nnunet(tmp_path / "ds", 2)
    out, report = tmp_path / "s", tmp_path / "r.json"
    assert _ingest(out, "nnunet", ds) == 0
    src = ds / "imagesTr" / "C_000_0000.nii"
    _rewrite_keeping_size_and_mtime(src)
    assert _ingest(out, "nnunet", ds, "--json", str(report)) == 0
    assert _items(report)["T1/C_000"] == "present"  # size and mtime unchanged: not hashed
    assert _ingest(out, "nnunet", ds, "--rehash", "--on-changed", "skip", "--json", str(report)) == 0
    assert _items(report)["T1/C_000"] == "present"  # found changed, kept as stored
    assert _ingest(out, "nnunet", ds, "--rehash", "--on-changed", "error", "--json", str(report)) == 1
    assert _items(report)["T1/C_000"] == "failed"
    assert _ingest(out, "nnunet", ds, "--rehash", "--json", str(report)) == 0
    assert _items(report)["T1/C_000"] == "replaced"
    np.testing.assert_array_equal(RadiObject(str(out))["T1"].loc["C_000"].to_numpy(), nib.load(str(src)).get_fdata())


def test_executor_is_passed_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import radiobject.ingest.cohort as cohort

    seen: list[str] = []
    real = cohort.run_ingest

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("executor", "thread"))
        return real(*args, **kwargs)

    monkeypatch.setattr(cohort, "run_ingest", spy)
    ds = _nnunet(tmp_path / "ds", 1)
    assert _ingest(tmp_path / "s", "nnunet", ds, "--executor", "process", "--workers", "1") == 0
    assert seen == ["process"] and RadiObject(str(tmp_path / "s"))["T1"].obs_ids == ["C_000"]


def test_scheduler_writes_on_dask_workers(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster, get_task_stream

    ds = _nnunet(tmp_path / "ds", 2)
    with (
        LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as stream,
    ):
        assert _ingest(tmp_path / "s", "nnunet", ds, "--scheduler", cluster.scheduler_address) == 0
    assert len([t for t in stream.data if str(t["key"]).startswith("write_one")]) == 6
    assert RadiObject(str(tmp_path / "s"))["label"].obs_ids == ["C_000", "C_001"]


def test_incomplete_without_layout_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    rc = main(["ingest", str(out), "--images", f"CT={tmp_path}/*.nii.gz", "--incomplete", "skip", "--no-progress"])
    assert rc == 2 and "--incomplete skip applies only with --layout" in capsys.readouterr().err
    assert not out.exists()


def test_ingest_layout_takes_the_same_write_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ingest-layout`` has every option ``ingest --layout`` applies (one definition), with its effect."""
    layout_dests = set(vars(build_parser().parse_args(["ingest-layout", "msd", "d", "-o", "s"])))
    missing = LAYOUT_APPLIED - layout_dests - {"manifest", "images", "dicom_root"}  # ingest's other sources
    assert missing == set()
    ds = _nnunet(tmp_path / "ds", 2)
    argv = ["ingest-layout", "nnunet", str(ds), "-o", str(tmp_path / "s"), "--no-progress", "--canonical"]
    argv += ["--compression", "blosc-zstd", "--chunks", "2,2,2", "--lossy", "T1=bits:8", "--commit-every", "1"]
    assert main(argv) == 0
    radi = RadiObject(str(tmp_path / "s"))
    vol = radi["T1"].loc["C_000"]
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S") and vol.metadata["lossy"]["setting"] == "keep_bits=8"
    assert vol.chunks[:3] == (2, 2, 2) and "zstd" in str(vol.info.codec)
    capsys.readouterr()
    bids = _bids(tmp_path / "bids")
    assert main(["ingest-layout", "bids", str(bids), "-o", str(tmp_path / "b"), "--philips-scaling", "precise"]) == 2
    assert "--philips-scaling does not apply to a bids dataset" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
