"""Volume versions: replace / delete are atomic, old versions go only by garbage collection,
the reader notices data and catalog disagreeing, tampered tables and planted links are refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiobject import RadiObject, VolumeCollection, WriteOptions
from radiobject.errors import (
    InvalidIdError,
    NotFoundError,
    StoreLockedError,
    UnsafePathError,
    VersionMismatchError,
)
from radiobject.model.bulk import IngestItem
from radiobject.storage.locks import write_lock
from radiobject.storage.tables import FragmentTable
from tests.model.helpers import image


def _coll(tmp_path: Path, backend: str, n: int = 3) -> VolumeCollection:
    imgs = {f"s{k}": image(k) for k in range(n)}
    obs = pd.DataFrame({"obs_id": list(imgs), "site": ["A", "B", "C"][:n]})
    return VolumeCollection.from_images(str(tmp_path / "c"), imgs, obs=obs, options=WriteOptions(backend=backend))


def _version_dirs(coll: VolumeCollection, oid: str) -> list[str]:
    return sorted(n for n in os.listdir(Path(coll.uri, "volumes", oid)) if not n.endswith(".json"))


def test_replace_publishes_a_new_version_and_keeps_the_old_until_gc(backend: str, tmp_path: Path) -> None:
    coll = _coll(tmp_path, backend)
    old = coll.loc["s1"]
    old_version, old_uri = old.info.version, old.uri
    new = coll.replace("s1", image(99))
    assert new.info.version != old_version and new.uri != old_uri
    np.testing.assert_array_equal(new.to_numpy(), image(99).array)
    fresh = VolumeCollection(coll.uri)
    np.testing.assert_array_equal(fresh.loc["s1"].to_numpy(), image(99).array)
    assert fresh.obs.set_index("obs_id").loc["s1", "site"] == "B"  # user columns kept
    assert fresh.obs_ids == ["s0", "s1", "s2"] and len(fresh) == 3
    np.testing.assert_array_equal(old.to_numpy(), image(1).array)  # an earlier reader: whole old volume
    assert len(_version_dirs(coll, "s1")) == 2
    assert fresh.compact() == []  # within the grace period nothing goes
    removed = fresh.collect_garbage(grace_seconds=0)
    assert removed == [f"volumes/s1/{old_version}"]
    assert _version_dirs(coll, "s1") == [new.info.version]
    np.testing.assert_array_equal(VolumeCollection(coll.uri).loc["s1"].to_numpy(), image(99).array)
    for k in ("s0", "s2"):
        np.testing.assert_array_equal(VolumeCollection(coll.uri).loc[k].to_numpy(), image(int(k[1])).array)


def test_replace_unknown_and_delete(backend: str, tmp_path: Path) -> None:
    coll = _coll(tmp_path, backend)
    with pytest.raises(NotFoundError):
        coll.replace("nope", image(5))
    with pytest.raises(NotFoundError):
        coll.delete(["s0", "nope"])
    assert len(VolumeCollection(coll.uri)) == 3  # nothing deleted by the failed call
    gone = coll.loc["s0"].info.version
    coll.delete("s0")
    fresh = VolumeCollection(coll.uri)
    assert fresh.obs_ids == ["s1", "s2"] and "s0" not in fresh
    with pytest.raises(NotFoundError):
        fresh.loc["s0"]
    fresh.compact()
    assert VolumeCollection(coll.uri).obs_ids == ["s1", "s2"]  # the tombstone survives compaction
    assert fresh.collect_garbage(grace_seconds=0) == [f"volumes/s0/{gone}"]
    assert not Path(coll.uri, "volumes", "s0").exists()  # no empty folder left behind
    assert Path(coll.uri, "volumes", "s1").is_dir()
    coll.append(image(7), "s0")  # the ID can be used again
    np.testing.assert_array_equal(VolumeCollection(coll.uri).loc["s0"].to_numpy(), image(7).array)


def test_bulk_write_replace_existing_reports_replaced(backend: str, tmp_path: Path) -> None:
    coll = _coll(tmp_path, backend)
    items = [IngestItem("s2", "s2", image(42)), IngestItem("s9", "s9", image(9))]
    with pytest.raises(Exception, match="already exists"):
        coll.write(items)
    report = coll.write(items, replace_existing=True)
    assert {r.obs_id: r.status for r in report.results} == {"s2": "replaced", "s9": "written"}
    fresh = VolumeCollection(coll.uri)
    np.testing.assert_array_equal(fresh.loc["s2"].to_numpy(), image(42).array)
    assert fresh.obs_ids == ["s0", "s1", "s2", "s9"]


def test_radi_object_replace_and_delete_subject(backend: str, tmp_path: Path) -> None:
    imgs = {f"s{k}": image(k) for k in range(3)}
    labs = {f"s{k}": image(10 + k, dtype="uint8") for k in range(3)}
    radi = RadiObject.from_images(
        str(tmp_path / "r"), {"T1w": imgs, "seg": labs}, options=WriteOptions(backend=backend)
    )
    radi.replace_subject("s1", {"T1w": image(77)})
    fresh = RadiObject(str(tmp_path / "r"))
    np.testing.assert_array_equal(fresh.T1w.loc["s1"].to_numpy(), image(77).array)
    np.testing.assert_array_equal(fresh.seg.loc["s1"].to_numpy(), labs["s1"].array)
    with pytest.raises(NotFoundError):
        radi.replace_subject("s1", {"nope": image(1)})
    fresh.delete_subject("s0")
    again = RadiObject(str(tmp_path / "r"))
    assert again.obs_subject_ids == ["s1", "s2"]
    assert again.T1w.obs_ids == ["s1", "s2"] and again.seg.obs_ids == ["s1", "s2"]
    with pytest.raises(NotFoundError):
        again.delete_subject("s0")


def test_version_mismatch_between_data_and_catalog_is_an_error(backend: str, tmp_path: Path) -> None:
    coll = _coll(tmp_path, backend)
    vol = coll.loc["s0"]
    fake = "f" * 32
    shutil.copytree(vol.uri, str(Path(vol.uri).parent / fake))  # data of one version under another's name
    row = coll.obs.set_index("obs_id").loc[["s0"]].reset_index().assign(version=fake)
    FragmentTable(os.path.join(coll.uri, "obs"), "obs_id").append(row)
    with pytest.raises(VersionMismatchError, match=fake):
        VolumeCollection(coll.uri).loc["s0"].to_numpy()


@pytest.mark.parametrize("column,bad", [("obs_id", "../../x"), ("obs_subject_id", "a/b"), ("version", "../x")])
def test_tampered_ids_read_back_are_refused(backend: str, tmp_path: Path, column: str, bad: str) -> None:
    coll = _coll(tmp_path, backend)
    row = coll.obs.iloc[[0]].copy()
    row[column] = bad
    FragmentTable(os.path.join(coll.uri, "obs"), "obs_id").append(row)
    with pytest.raises(InvalidIdError, match="obs"):
        VolumeCollection(coll.uri).obs_ids  # noqa: B018 - the read must raise


def test_tampered_subject_table_is_refused(tmp_path: Path) -> None:
    RadiObject.from_images(str(tmp_path / "r"), {"T1w": {"s0": image(0)}})
    FragmentTable(str(tmp_path / "r" / "obs_meta"), "obs_subject_id").append(pd.DataFrame({"obs_subject_id": ["../x"]}))
    with pytest.raises(InvalidIdError, match="obs_meta"):
        RadiObject(str(tmp_path / "r")).obs_subject_ids  # noqa: B018 - the read must raise


def test_symlinked_volume_folder_is_never_written_or_deleted_through(backend: str, tmp_path: Path) -> None:
    coll = _coll(tmp_path, backend)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    vdir = Path(coll.uri, "volumes", "s1")
    shutil.rmtree(vdir)
    vdir.symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        coll.replace("s1", image(3))
    report = coll.write([IngestItem("s1", "s1", image(3))], replace_existing=True, on_error="collect")
    assert report.failed and "symbolic link" in report.failed[0].error
    coll.delete("s1")  # a catalog commit only
    with pytest.raises(UnsafePathError):
        coll.collect_garbage(grace_seconds=0)  # removing the old version would go through the link
    assert sorted(os.listdir(outside)) == ["precious.txt"] and (outside / "precious.txt").read_text() == "keep me"


def _hold_lock(root: str, ready, release) -> None:  # runs in a spawned child
    with write_lock(root):
        ready.set()
        release.wait(30)


def test_lock_timeout_names_store_and_holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing as mp

    coll = _coll(tmp_path, "zarr", n=1)
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(coll.uri, ready, release))
    proc.start()
    try:
        assert ready.wait(60)
        monkeypatch.setenv("RADIOBJECT_LOCK_TIMEOUT", "0.3")
        with pytest.raises(StoreLockedError, match=f"pid {proc.pid}") as err:
            coll.append(image(5), "s5")
        assert coll.uri in str(err.value)
        with write_lock(coll.uri + "/elsewhere", timeout=0.1):
            pass  # another root is not blocked
    finally:
        release.set()
        proc.join(30)
    assert proc.exitcode == 0
    monkeypatch.setenv("RADIOBJECT_LOCK_TIMEOUT", "30")
    coll.append(image(5), "s5")  # released: the write goes through
    assert "s5" in VolumeCollection(coll.uri)


def test_symlinked_collection_folder_is_refused(tmp_path: Path) -> None:
    RadiObject.from_images(str(tmp_path / "r"), {"T1w": {"s0": image(0)}})
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "r" / "collections" / "pred").symlink_to(outside, target_is_directory=True)
    radi = RadiObject(str(tmp_path / "r"))
    with pytest.raises(UnsafePathError, match="symbolic link"):
        radi.add_collection("pred", [IngestItem("s0", "s0", image(1))])
    assert list(outside.iterdir()) == []


def test_export_stays_inside_the_output_folder(tmp_path: Path) -> None:
    from radiobject.cli.main import main

    RadiObject.from_images(str(tmp_path / "r"), {"T1w": {"s0": image(0), "s1": image(1)}})
    out = tmp_path / "out"
    (out / "T1w").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    (out / "T1w" / "s1.nii.gz").symlink_to(victim / "s1.nii.gz")  # a planted link inside OUT
    assert main(["export", str(tmp_path / "r"), str(out)]) == 1  # s1 refused, s0 written
    assert (out / "T1w" / "s0.nii.gz").is_file() and list(victim.iterdir()) == []
    FragmentTable(str(tmp_path / "r" / "collections" / "T1w" / "obs"), "obs_id").append(
        RadiObject(str(tmp_path / "r")).T1w.obs.iloc[[0]].assign(obs_id="../../escaped")
    )
    out2 = tmp_path / "out2"
    assert main(["export", str(tmp_path / "r"), str(out2)]) != 0
    assert not (tmp_path / "escaped.nii.gz").exists() and not list(tmp_path.glob("**/escaped*"))


def test_verify_reports_a_version_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radiobject.cli.main import main

    radi = RadiObject.from_images(str(tmp_path / "r"), {"T1w": {"s0": image(0), "s1": image(1)}})
    vol = radi.T1w.loc["s1"]
    fake = "e" * 32
    shutil.copytree(vol.uri, str(Path(vol.uri).parent / fake))
    obs = os.path.join(radi.T1w.uri, "obs")
    FragmentTable(obs, "obs_id").append(radi.T1w.obs.iloc[[1]].assign(version=fake))
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert "s1" in out and "version" in out
