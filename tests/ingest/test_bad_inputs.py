"""Hostile inputs to a cohort ingest: typed errors naming the file (and line), early, in bounded
memory; nothing that looks like a finished store is left behind; one bad file fails its volume only."""

from __future__ import annotations

import gzip
import json
import os
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest

from radiobject import RadiObject
from radiobject.errors import DuplicateIdError, ImageReadError, ManifestError, StoreExistsError
from radiobject.ingest.cohort import MARKER, run_ingest
from radiobject.ingest.manifest import plan_from_globs, plan_from_manifest
from radiobject.ingest.sample import SampleCohort

pytestmark = pytest.mark.timeout(60)  # a FIFO that is opened would block: fail, never hang


def _manifest(cohort: SampleCohort, rows: list[dict[str, str]], name: str = "m.csv") -> Path:
    df = pd.concat([pd.read_csv(cohort.manifest, dtype=str), pd.DataFrame(rows)], ignore_index=True)
    path = cohort.folder / name
    df.to_csv(path, index=False)
    return path


def test_fifo_and_device_in_manifest_fail_their_items(cohort: SampleCohort, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    m = _manifest(
        cohort,
        [
            {"subject_id": "sub-09", "collection": "T1w", "path": str(fifo)},
            {"subject_id": "sub-10", "collection": "T1w", "path": "/dev/zero"},
        ],
    )
    rep = run_ingest(str(tmp_path / "s"), plan_from_manifest(m))
    failed = {r["obs_id"]: r["error"] for r in rep.failed}
    assert "FIFO" in failed["sub-09"] and "device" in failed["sub-10"]
    assert rep.count("written") == 12  # the cohort goes on


def test_fifo_matched_by_glob_and_manifest_itself(cohort: SampleCohort, tmp_path: Path) -> None:
    os.mkfifo(cohort.folder / "sub-01" / "anat" / "sub-01_extra.nii.gz")
    rep = run_ingest(
        str(tmp_path / "s"),
        plan_from_globs({"T1w": str(cohort.folder / "*/anat/*_extra.nii.gz")}, subject_pattern=r"(sub-\d+)"),
    )
    assert not rep.ok and "FIFO" in rep.failed[0]["error"]
    assert not Path(tmp_path / "s").exists()  # nothing valid: no store created
    fifo_manifest = tmp_path / "m.csv"
    os.mkfifo(fifo_manifest)
    with pytest.raises(ManifestError, match="FIFO") as info:
        plan_from_manifest(fifo_manifest)
    assert str(fifo_manifest) in str(info.value)
    with pytest.raises(ManifestError, match="device"):
        plan_from_manifest("/dev/zero")


def test_bad_encoding_names_file_and_line(tmp_path: Path) -> None:
    m = tmp_path / "latin1.csv"
    m.write_bytes("subject_id,collection,path\ns1,T1w,a.nii\nJos\xe9,T1w,b.nii\n".encode("latin-1"))
    with pytest.raises(ManifestError) as info:
        plan_from_manifest(m)
    assert info.value.line == 3 and str(m) in str(info.value) and "UTF-8" in str(info.value)
    subjects = tmp_path / "participants.csv"
    subjects.write_bytes(b"participant_id,age\n\xff\xfe,3\n")
    good = tmp_path / "ok.csv"
    good.write_text("subject_id,collection,path\ns1,T1w,a.nii\n")
    with pytest.raises(ManifestError, match="participants.csv:2"):
        plan_from_manifest(good, subjects=subjects)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("subject_id,collection,path\ns1,T1w,a.nii,extra,more\n")
    with pytest.raises(ManifestError, match="ragged.csv"):
        plan_from_manifest(ragged)


def test_20000_duplicate_rows_fast_and_bounded(tmp_path: Path) -> None:
    m = tmp_path / "dup.csv"
    with open(m, "w") as f:
        f.write("subject_id,collection,path\n")
        f.write("s1,T1w,/nowhere/a.nii.gz\n" * 20000)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(DuplicateIdError) as info:
        plan_from_manifest(m)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    text = str(info.value)
    assert str(m) in text and "lines 2, 3" in text and "20000" in text and len(text) < 400
    assert seconds < 10 and peak < 200 << 20


def test_non_store_folder_with_files_refused(cohort: SampleCohort, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.docx").write_text("precious")
    with pytest.raises(StoreExistsError, match="thesis.docx"):
        run_ingest(str(target), plan_from_manifest(cohort.manifest))
    assert sorted(os.listdir(target)) == ["thesis.docx"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_ingest(str(empty), plan_from_manifest(cohort.manifest)).ok  # an empty folder is fine
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(StoreExistsError, match="a file"):
        run_ingest(str(afile), plan_from_manifest(cohort.manifest))


def test_glob_typo_leaves_no_store(cohort: SampleCohort, tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="matched no files"):
        plan_from_globs({"T1w": str(cohort.folder / "*/anta/*_T1w.nii.gz")})
    bad = pd.DataFrame({"subject_id": ["a"], "collection": ["T1w"], "path": [str(tmp_path / "missing.nii.gz")]})
    rep = run_ingest(str(tmp_path / "s"), plan_from_manifest(bad))
    assert not rep.ok and "no store created" in rep.aborted and not (tmp_path / "s").exists()


def test_corrupt_gzip_fails_its_volume_only(cohort: SampleCohort, tmp_path: Path) -> None:
    t1 = cohort.folder / "sub-02/anat/sub-02_T1w.nii.gz"
    raw = bytearray(t1.read_bytes())
    raw[-8] ^= 0xFF  # the gzip CRC
    t1.write_bytes(bytes(raw))
    uri = str(tmp_path / "s")
    rep = run_ingest(uri, plan_from_manifest(cohort.manifest))
    assert [(r["collection"], r["obs_id"]) for r in rep.failed] == [("T1w", "sub-02")]
    assert "gzip" in rep.failed[0]["error"] and rep.count("written") == 11
    assert "sub-02" not in RadiObject(uri).T1w.obs_ids and "sub-02" in RadiObject(uri).seg.obs_ids
    marker = json.loads(Path(uri, MARKER).read_text())
    assert marker["complete"] is False and marker["running"] is False


def test_gzip_claiming_32_gb_refused(cohort: SampleCohort, tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape((2048, 2048, 2048))
    claim = tmp_path / "claim.nii.gz"
    claim.write_bytes(gzip.compress(hdr.binaryblock + b"\x00" * 4 + b"\x00" * 4096))
    m = _manifest(cohort, [{"subject_id": "sub-09", "collection": "T1w", "path": str(claim)}])
    rep = run_ingest(str(tmp_path / "s"), plan_from_manifest(m))
    (bad,) = rep.failed
    assert bad["obs_id"] == "sub-09" and ("GiB" in bad["error"] or "cannot hold" in bad["error"])
    assert str(claim) in bad["error"] or str(claim) == bad["source"]


def test_fifo_in_dicom_tree_and_in_a_folder_spec(tmp_path: Path) -> None:
    from radiobject.ingest.manifest import plan_from_dicom_root
    from tests.conftest import data_path

    src = data_path("dicom", "dicom2nifti", "anatomical", "001")
    root = tmp_path / "dicom"
    (root / "subjA").mkdir(parents=True)
    for f in sorted(src.iterdir())[:4]:
        os.symlink(f, root / "subjA" / f.name)
    os.mkfifo(root / "subjA" / "IM_9999.dcm")
    t0 = time.monotonic()
    try:
        plan = plan_from_dicom_root(root)
    except ImageReadError as exc:  # the subject fails with a typed error naming the FIFO
        assert "IM_9999" in str(exc)
    else:
        named = [p.reason for p in plan.problems if "IM_9999" in p.reason or "FIFO" in p.reason]
        assert named or not any("IM_9999" in f for t in plan.tasks for f in t.files)
    assert time.monotonic() - t0 < 30
    folder = tmp_path / "niftis"
    folder.mkdir()
    os.mkfifo(folder / "a.nii.gz")
    with pytest.raises(ImageReadError, match="FIFO"):
        RadiObject.from_files(str(tmp_path / "s"), {"T1w": str(folder)})
    assert not (tmp_path / "s").exists()


def test_constructor_refuses_corrupt_gzip_typed(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    from radiobject.errors import NiftiReadError

    folder = tmp_path / "raw"
    folder.mkdir()
    for s in ("a", "b"):
        nib.save(nib.Nifti1Image(np.full((6, 7, 8), 3, np.int16), np.eye(4)), str(folder / f"{s}.nii.gz"))
    raw = bytearray((folder / "b.nii.gz").read_bytes())
    raw[-8] ^= 0xFF
    (folder / "b.nii.gz").write_bytes(bytes(raw))
    with pytest.raises(NiftiReadError, match="b.nii.gz.*gzip"):
        RadiObject.from_niftis(str(tmp_path / "s"), {"T1w": str(folder / "*.nii.gz")})
    assert not (tmp_path / "s").exists()  # a failed constructor leaves nothing that looks like a store


def test_encoding_check_reads_long_lines_in_pieces(tmp_path: Path) -> None:
    from radiobject.ingest.table_checks import check_text_file

    m = tmp_path / "long.csv"
    m.write_bytes(b"subject_id,collection,path\n" + ("\u00e9" * (1 << 20)).encode() + b",T1w,a.nii\nb\xff,T1w,b\n")
    with pytest.raises(ManifestError) as info:  # a character split at a 1 MiB piece boundary is not an error
        check_text_file(str(m))
    assert info.value.line == 3
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffsubject_id,collection,path\n\u00f6,T1w,a.nii\n".encode())
    check_text_file(str(bom))


def test_constructors_refuse_foreign_folder_but_resume_a_half_created_store(
    cohort: SampleCohort, tmp_path: Path, backend: str
) -> None:
    from radiobject import VolumeCollection, WriteOptions

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("keep")
    t1 = str(cohort.folder / "*/anat/*_T1w.nii.gz")
    with pytest.raises(StoreExistsError, match="data.csv"):
        RadiObject.from_niftis(str(mine), {"T1w": t1})
    with pytest.raises(StoreExistsError, match="data.csv"):
        VolumeCollection.from_niftis(str(mine), t1)
    assert os.listdir(mine) == ["data.csv"]
    half = tmp_path / "half"  # a kill between creating the groups and writing the marker
    RadiObject.create(str(half), options=WriteOptions(backend=backend))
    (half / "radiobject.json").unlink()
    rep = run_ingest(str(half), plan_from_manifest(cohort.manifest), options=WriteOptions(backend=backend))
    assert rep.ok and rep.count("written") == 12


def test_bad_parquet_and_duplicate_subject_rows_before_writing(cohort: SampleCohort, tmp_path: Path) -> None:
    pq = tmp_path / "m.parquet"
    pq.write_bytes(b"PAR1 but not really a parquet file")
    with pytest.raises(ManifestError, match="m.parquet"):
        plan_from_manifest(pq)
    subjects = tmp_path / "participants.csv"
    subjects.write_text("participant_id,age\nsub-01,30\nsub-02,31\nsub-01,32\n")
    with pytest.raises(DuplicateIdError, match="participants.csv.*lines 2, 4"):
        plan_from_manifest(cohort.manifest, subjects=subjects)
