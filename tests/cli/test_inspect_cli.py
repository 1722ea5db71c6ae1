"""``radiobject info | verify | export | qc`` on a small ingested store."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pytest

from radiobject import RadiObject
from radiobject.cli.main import main
from radiobject.ingest import make_sample_cohort, plan_from_manifest, run_ingest
from radiobject.model.options import WriteOptions
from radiobject.storage.base import Codec


@pytest.fixture
def store(tmp_path: Path, backend: str) -> str:
    c = make_sample_cohort(tmp_path / "c", 3, (12, 14, 10))
    uri = str(tmp_path / "store")
    assert run_ingest(
        uri, plan_from_manifest(c.manifest, subjects=c.participants), options=WriteOptions(backend=backend)
    ).ok
    return uri


def test_info(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", store]) == 0
    out = capsys.readouterr().out
    assert (
        "3 subjects, 3 collections" in out
        and "12x14x10" in out
        and "float32" in out
        and f"{Codec().name}:{Codec().level}" in out
    )
    assert main(["info", store, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    t1 = info["collections"]["T1w"]
    assert t1["volumes"] == 3 and t1["dtypes"] == {"float32": 3} and t1["raw_bytes"] == 3 * 12 * 14 * 10 * 4
    assert t1["stored_bytes"] > 0 and info["collections"]["seg"]["dtypes"] == {"uint8": 3}
    assert set(info["obs_meta_columns"]) >= {"age", "sex", "site"}


def test_info_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "error" in capsys.readouterr().err


def test_verify_ok_then_corrupt(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", store]) == 0
    out = capsys.readouterr().out
    assert "verified 9 volume(s) in 3 collection(s)" in out and out.rstrip().endswith("OK")
    assert main(["verify", store, "--quick"]) == 0
    vol = Path(store, "collections", "FLAIR", "volumes", "sub-02")
    target = next(
        p
        for p in sorted(vol.rglob("*"))
        if p.is_file()
        and p.stat().st_size > 200
        and (p.name == "0" or p.name.endswith(".tdb") and p.parent.parent.name == "__fragments")
    )
    target.write_bytes(b"\x00garbage" * 50)
    capsys.readouterr()
    assert main(["verify", store]) == 1
    out = capsys.readouterr().out
    assert "FLAIR/volumes/sub-02/" in out and target.name in out and "1 problem(s)" in out
    assert main(["verify", store, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["errors"] == 1
    errors = [f for f in report["findings"] if f["level"] == "error"]
    assert len(errors) == 1 and errors[0]["where"].endswith(target.name)


def test_export_nifti_keeps_affine_and_dtype(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exp"
    assert main(["export", store, "--format", "nifti", str(out), "--collections", "FLAIR", "seg"]) == 0
    radi = RadiObject(store)
    for name in ("FLAIR", "seg"):
        for vol in radi[name]:
            img = nib.load(str(out / name / f"{vol.obs_id}.nii.gz"))
            assert img.get_data_dtype() == vol.dtype
            assert np.array_equal(img.affine, vol.affine)
            assert np.array_equal(np.asarray(img.dataobj), vol.to_numpy())
    assert not (out / "T1w").exists()
    assert main(["export", store, str(tmp_path / "e2"), "--subjects", "sub-02", "--uncompressed"]) == 0
    assert sorted(p.name for p in (tmp_path / "e2" / "T1w").iterdir()) == ["sub-02.nii"]
    assert main(["export", store, str(tmp_path / "e3"), "--collections", "nope"]) == 2


def test_qc_montage(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qc", store, "-o", str(tmp_path / "no" / "qc.png")]) == 2
    assert f"the folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err
    png = tmp_path / "qc.png"
    assert main(["qc", store, "-o", str(png)]) == 0
    assert "3 subject(s) x 2 collection(s) x 3 planes" in capsys.readouterr().out  # seg found as the label
    img = mpimg.imread(str(png))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
    colored = np.abs(img[..., 0] - img[..., 2]) > 0.2  # gray images have R == B; the overlay does not
    assert colored.sum() > 20
    assert (
        main(
            [
                "qc",
                store,
                "-o",
                str(tmp_path / "q2.png"),
                "--collections",
                "T1w",
                "--subjects",
                "sub-03",
                "--label",
                "seg",
            ]
        )
        == 0
    )
    assert main(["qc", store, "-o", str(tmp_path / "q3.png"), "--label", "nope"]) == 2


def test_info_and_verify_a_standalone_collection(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from radiobject import ImageData, VolumeCollection
    from radiobject.model.bulk import IngestItem

    uri = str(tmp_path / "ct")
    items = [
        IngestItem(s, s, ImageData(np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4) + i, np.eye(4)))
        for i, s in enumerate(["s1", "s2"])
    ]
    VolumeCollection.from_items(uri, items, options=WriteOptions(backend=backend))
    assert main(["info", uri]) == 0
    out = capsys.readouterr().out
    assert "2 subjects, a collection" in out and "6x5x4" in out and "int16" in out
    assert main(["info", uri, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "collection" and info["collections"]["ct"]["volumes"] == 2
    assert main(["verify", uri]) == 0 and capsys.readouterr().out.rstrip().endswith("OK")
    assert main(["verify", uri, "--sources"]) == 0
    capsys.readouterr()
    vol = Path(uri, "volumes", "s2")
    target = next(
        p
        for p in sorted(vol.rglob("*"))
        if p.is_file() and (p.name == "0" or p.name.endswith(".tdb") and p.parent.parent.name == "__fragments")
    )
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 3] ^= 0x10  # one flipped bit
    target.write_bytes(bytes(raw))
    assert main(["verify", uri]) == 1
    out = capsys.readouterr().out
    assert "volumes/s2/" in out and target.name in out


def test_info_lists_a_collection_left_unfinished(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A collection whose builder was killed does not hide the rest of the store from ``info``."""
    from radiobject import ImageData
    from radiobject._os import owners
    from radiobject.model import building
    from radiobject.model.bulk import IngestItem

    uri = str(tmp_path / "store")
    img = ImageData(np.zeros((4, 4, 4), np.float32), np.eye(4))
    radi = RadiObject.from_items(uri, {"img": [IngestItem("a", "a", img)]})
    radi.add_collection("derived", [IngestItem("a", "a", img)])
    boot, ns, _, start = owners.this_process().split()
    dead = {**building.record(), "owner": f"{boot} {ns} 999999999 {start}"}  # above pid_max: certainly ended

    def mark(meta: dict) -> bool:
        meta[building.COLLECTIONS_KEY] = {"derived": dead}
        return True

    building.update_marker(uri, radi.location.storage, mark)
    assert main(["info", uri]) == 0
    out = capsys.readouterr().out
    assert "img " in out and "derived: cannot be read" in out and "ended before it finished" in out
    assert main(["verify", uri]) == 1
    assert "collections/derived" in capsys.readouterr().out


def test_info_says_when_the_last_ingest_did_not_complete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), src / "s1.nii.gz")
    (src / "s2.nii.gz").write_bytes(b"not a nifti at all")
    uri = str(tmp_path / "store")
    assert main(["ingest", uri, "--images", f"img={src}/*.nii.gz"]) == 1
    capsys.readouterr()
    assert main(["info", uri]) == 0
    assert "the last ingest did not complete (1 item(s) failed" in capsys.readouterr().out
    assert main(["info", uri, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ingest"]["complete"] is False
    (src / "s2.nii.gz").unlink()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), src / "s2.nii.gz")
    assert main(["ingest", uri, "--images", f"img={src}/*.nii.gz"]) == 0
    capsys.readouterr()
    assert main(["info", uri]) == 0
    assert "did not complete" not in capsys.readouterr().out
