"""Source fingerprints: every volume records what it was read from; a re-ingest notices a changed
source and replaces, fails or keeps that volume (``on_changed``); ``verify_sources`` lists volumes
whose sources changed or vanished."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject import RadiObject, WriteOptions
from radiobject.ingest.changes import verify_sources
from radiobject.ingest.cohort import run_ingest
from radiobject.ingest.manifest import plan_from_manifest
from radiobject.ingest.sample import SampleCohort
from radiobject.ingest.sources import MAX_LISTED, compare, fingerprint, source_files


# the ignore below: returns run_ingest's report
def _ingest(cohort: SampleCohort, uri: str, **kw: object):  # type: ignore[no-untyped-def]
    # the ignore below: keyword options forwarded as given
    return run_ingest(uri, plan_from_manifest(cohort.manifest, subjects=cohort.participants), **kw)  # type: ignore[arg-type]


def _rewrite(path: Path, scale: int) -> np.ndarray:
    """New voxels, same shape, dtype and affine (so only the content tells it changed)."""
    img = nib.load(str(path))
    new = (np.asarray(img.dataobj) * 0 + scale).astype(img.get_data_dtype())
    nib.save(nib.Nifti1Image(new, img.affine, img.header), str(path))
    return new


def test_every_volume_records_its_sources(cohort: SampleCohort, tmp_path: Path, backend: str) -> None:
    uri = str(tmp_path / "s")
    assert _ingest(cohort, uri, options=WriteOptions(backend=backend)).ok
    radi = RadiObject(uri)
    t1 = cohort.folder / "sub-02/anat/sub-02_T1w.nii.gz"
    vol = radi.T1w.loc["sub-02"]
    rec = vol.metadata["sources"]
    assert rec["reader"].startswith("radiobject ") and "nifti" in rec["reader"]
    (entry,) = rec["files"]
    assert entry["path"] == str(t1.resolve()) and entry["size"] == t1.stat().st_size
    assert entry["mtime_ns"] == t1.stat().st_mtime_ns and len(entry["blake2b"]) == 64
    row = radi.T1w.obs.set_index("obs_id").loc["sub-02"]
    assert json.loads(row["metadata"])["sources"] == rec  # in the obs row too
    assert vol.info.sources == rec
    assert verify_sources(radi) == []


def test_changed_source_replaced_by_default(cohort: SampleCohort, tmp_path: Path, backend: str) -> None:
    uri = str(tmp_path / "s")
    _ingest(cohort, uri, options=WriteOptions(backend=backend))
    t1 = cohort.folder / "sub-03/anat/sub-03_T1w.nii.gz"
    new = _rewrite(t1, 7)
    found = verify_sources(RadiObject(uri))
    assert [(f.collection, f.obs_id) for f in found] == [("T1w", "sub-03")] and str(t1.resolve()) in found[0].reason
    rep = _ingest(cohort, uri)
    assert rep.ok and rep.count("replaced") == 1 and rep.count("present") == 11 and rep.count("written") == 0
    assert "sub-03" in rep.summary_table() and "source changed" in rep.summary_table()
    radi = RadiObject(uri)
    np.testing.assert_array_equal(radi.T1w.loc["sub-03"].to_numpy(), new)
    assert verify_sources(radi) == []
    assert _ingest(cohort, uri).count("present") == 12  # and then it is stable


def test_on_changed_error_and_skip(cohort: SampleCohort, tmp_path: Path) -> None:
    uri = str(tmp_path / "s")
    _ingest(cohort, uri)
    before = RadiObject(uri).seg.loc["sub-01"].to_numpy()
    _rewrite(cohort.folder / "sub-01/anat/sub-01_seg.nii.gz", 3)
    err = _ingest(cohort, uri, on_changed="error")
    assert not err.ok and [(r["collection"], r["obs_id"]) for r in err.failed] == [("seg", "sub-01")]
    assert "SourceChangedError" in err.failed[0]["error"] and "sub-01_seg.nii.gz" in err.failed[0]["error"]
    skip = _ingest(cohort, uri, on_changed="skip")
    assert skip.ok and skip.count("present") == 12 and "kept although the source changed" in skip.summary_table()
    np.testing.assert_array_equal(RadiObject(uri).seg.loc["sub-01"].to_numpy(), before)  # both kept the old one
    with pytest.raises(ValueError, match="on_changed"):
        _ingest(cohort, uri, on_changed="overwrite")


def test_same_size_same_mtime_edit_found_by_rehash(cohort: SampleCohort, tmp_path: Path) -> None:
    """An edit that keeps size and mtime: invisible to stat, found by hashing."""
    uri = str(tmp_path / "s")
    _ingest(cohort, uri)
    t1 = cohort.folder / "sub-04/anat/sub-04_T1w.nii"
    t1 = t1 if t1.exists() else cohort.folder / "sub-04/anat/sub-04_T1w.nii.gz"
    st = t1.stat()
    raw = bytearray(t1.read_bytes())
    raw[-20] ^= 0x01
    t1.write_bytes(bytes(raw))
    os.utime(t1, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _ingest(cohort, uri).count("present") == 12  # stat-only check (resume stays cheap)
    assert [f.obs_id for f in verify_sources(RadiObject(uri))] == ["sub-04"]  # verify hashes
    assert [f.obs_id for f in verify_sources(RadiObject(uri), rehash=False)] == []


def test_touched_or_moved_but_same_bytes_is_unchanged(cohort: SampleCohort, tmp_path: Path) -> None:
    uri = str(tmp_path / "s")
    _ingest(cohort, uri)
    os.utime(cohort.folder / "sub-01/anat/sub-01_T1w.nii.gz", ns=(1, 10**18))
    moved = tmp_path / "moved"
    shutil.copytree(cohort.folder, moved)
    rep = run_ingest(uri, plan_from_manifest(moved / "manifest.csv"))
    assert rep.ok and rep.count("present") == 12 and rep.count("replaced") == 0


def test_vanished_source_reported(cohort: SampleCohort, tmp_path: Path) -> None:
    uri = str(tmp_path / "s")
    _ingest(cohort, uri)
    gone = cohort.folder / "sub-02/anat/sub-02_FLAIR.nii.gz"
    gone.unlink()
    found = verify_sources(RadiObject(uri))
    assert [(f.collection, f.obs_id) for f in found] == [("FLAIR", "sub-02")] and "vanished" in found[0].reason


def test_many_file_series_aggregated(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    for i in range(MAX_LISTED + 8):
        (folder / f"{i:04d}.dcm").write_bytes(bytes([i]) * 100)
    paths = source_files(str(folder))
    rec = fingerprint(paths, "dicom")
    (agg,) = rec["files"]
    assert agg["count"] == len(paths) and agg["size"] == 100 * len(paths)
    assert compare(rec, paths) is None and compare(rec, paths, rehash=True) is None
    (folder / "0005.dcm").write_bytes(b"\x07" * 100)
    os.utime(folder / "0005.dcm", ns=(1, agg["mtime_ns"]))  # same size and newest mtime kept
    assert compare(rec, paths) is None and "changed" in str(compare(rec, paths, rehash=True))
    (folder / "0006.dcm").unlink()
    assert "vanished" in str(compare(rec, paths))
    assert "40 file(s) ingested, 39 now" in str(compare(rec, source_files(str(folder))))


@pytest.mark.timeout(30)
def test_tampered_records_never_open_devices_or_fifos(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in ("/dev/zero", str(fifo)):
        rec = {"reader": "x", "files": [{"path": target, "size": 1, "mtime_ns": 1, "blake2b": "00"}]}
        reason = compare(rec, [target], rehash=True)
        assert reason is not None and "vanished" in reason and "regular file" in reason


def test_unlistable_folder_fails_the_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radiobject.errors import ImageReadError
    from radiobject.ingest import sources

    (tmp_path / "series" / "sub").mkdir(parents=True)

    def walk(top: str, onerror=None):  # type: ignore[no-untyped-def]  # stand-in for os.walk
        yield top, ["sub"], []
        onerror(PermissionError(13, "Permission denied", os.path.join(top, "sub")))

    monkeypatch.setattr(sources.os, "walk", walk)
    with pytest.raises(ImageReadError, match="sub.*cannot list folder"):
        sources.source_files(str(tmp_path / "series"))


def test_order_of_listed_files_does_not_matter(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        f = tmp_path / f"{i}.dcm"
        f.write_bytes(bytes([i]) * (10 + i))
        files.append(str(f))
    rec = fingerprint(files, "dicom")
    assert compare(rec, files[::-1], rehash=True) is None
    Path(files[1]).write_bytes(b"\x09" * 11)
    assert "content differs" in str(compare(rec, files[::-1], rehash=True))


@pytest.mark.timeout(120)
def test_stuck_source_during_comparison_does_not_hang_the_rerun(
    cohort: SampleCohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored volume whose source blocks while it is compared with its fingerprint: the re-run
    finishes within the item limit; that volume is tried again (the read has the same limit)."""
    import threading

    from radiobject.ingest import changes

    uri = str(tmp_path / "s")
    assert _ingest(cohort, uri).ok
    stuck = str((cohort.folder / "sub-03/anat/sub-03_T1w.nii.gz").resolve())
    release = threading.Event()
    real = changes.compare

    def blocking(record, files, **kw):  # type: ignore[no-untyped-def]
        if any(stuck in str(f) for f in files):
            release.wait(60)
        return real(record, files, **kw)

    monkeypatch.setattr(changes, "compare", blocking)
    try:
        rep = _ingest(cohort, uri, options=WriteOptions(item_timeout_s=1.0))
    finally:
        release.set()
    assert rep.ok and rep.count("replaced") == 1 and rep.count("present") == 11
    assert "timed out" in rep.summary_table() and "sub-03" in rep.summary_table()
    assert verify_sources(RadiObject(uri)) == []
