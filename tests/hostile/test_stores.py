"""Damaged stores: every read path (API, info, verify, export) gives the right data or a typed
error naming the store; never wrong voxels, never a traceback."""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from radiobject import RadiObject
from radiobject.errors import RadiObjectError, StoreNotFoundError
from tests.hostile.conftest import error_line, run_cli

pytestmark = pytest.mark.timeout(120)


def _vol(store: Path) -> Path:
    return Path([p for p in sorted(glob.glob(str(store / "collections/T1w/volumes/sub-01/*"))) if os.path.isdir(p)][0])


def _first(pattern: str) -> Path:
    return Path(sorted(glob.glob(pattern))[0])


def _flip(path: Path, offset: int | None = None) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 if offset is None else offset] ^= 0x55
    path.write_bytes(bytes(raw))


MARKER_DAMAGE: dict[str, Callable[[Path], object]] = {
    "deleted": lambda s: os.remove(s / "radiobject.json"),
    "garbage": lambda s: (s / "radiobject.json").write_bytes(b"\x00\xffgarbage{"),
    "a_list": lambda s: (s / "radiobject.json").write_text("[1, 2]"),
    "unknown_backend": lambda s: (s / "radiobject.json").write_text('{"format": "radiobject", "backend": "nope"}'),
    "a_folder": lambda s: (os.remove(s / "radiobject.json"), os.mkdir(s / "radiobject.json")),
}


@pytest.mark.parametrize("damage", sorted(MARKER_DAMAGE))
def test_damaged_store_marker_typed(store: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    MARKER_DAMAGE[damage](store)
    with pytest.raises(RadiObjectError) as info:
        RadiObject(str(store))
    assert str(store) in str(info.value)
    cmds = (["info", store], ["verify", store], ["verify", "--quick", store], ["export", store, store.parent / "x"])
    for cmd in cmds:
        res = run_cli(capsys, *cmd)
        assert res.rc == 2, (cmd, res.err)
        assert str(store) in error_line(res)


DATA_DAMAGE: dict[str, Callable[[Path], object]] = {
    "flip_table": lambda s: _flip(_first(str(s / "collections/T1w/obs/*"))),
    "garbage_collection_json": lambda s: (s / "collections/T1w/collection.json").write_text("{"),
    "deleted_collection_json": lambda s: os.remove(s / "collections/T1w/collection.json"),
    "deleted_volume_dir": lambda s: shutil.rmtree(_vol(s)),
    "volume_dir_symlink": lambda s: (
        shutil.rmtree(s / "collections/T1w/volumes/sub-01"),
        os.symlink(s.parent / "cohort", s / "collections/T1w/volumes/sub-01"),
    ),
}


@pytest.mark.parametrize("damage", sorted(DATA_DAMAGE))
def test_damaged_store_never_silently_wrong(store: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = {
        (n, v.obs_id): v.to_numpy() for n in RadiObject(str(store)).collection_names for v in RadiObject(str(store))[n]
    }
    DATA_DAMAGE[damage](store)
    res = run_cli(capsys, "verify", store)
    assert res.rc == 1, (damage, res.out, res.err)  # verify always finds it
    try:  # a reader gets exactly the stored voxels or a typed error
        radi = RadiObject(str(store))
        for n in radi.collection_names:
            for v in radi[n]:
                assert np.array_equal(v.to_numpy(), before[(n, v.obs_id)])
    except RadiObjectError as exc:
        assert str(store) in str(exc)
    res = run_cli(capsys, "export", store, store.parent / "out")
    assert res.rc in (0, 1, 2)
    res = run_cli(capsys, "info", store)
    assert res.rc in (0, 2)


def test_extra_unknown_files_are_harmless(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (store / "junk.txt").write_text("x")
    (store / "collections" / "zz").mkdir()
    (store / "collections" / "T1w" / "volumes" / "stray").mkdir()
    radi = RadiObject(str(store))
    assert sorted(radi.collection_names) == ["FLAIR", "T1w", "seg"]
    assert run_cli(capsys, "info", store).rc == 0


def test_info_of_collection_whose_catalog_was_deleted(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for p in glob.glob(str(store / "collections/T1w/obs/*")):
        os.remove(p)
    res = run_cli(capsys, "info", store)  # damage, not an empty collection: a typed error naming it
    assert res.rc == 2 and "obs table" in error_line(res) and "T1w" in error_line(res)


@pytest.mark.parametrize("what", ["a_file", "missing", "cohort_folder"])
def test_info_verify_on_non_stores(store: Path, what: str, capsys: pytest.CaptureFixture[str]) -> None:
    target = {
        "a_file": store / "radiobject.json",
        "missing": store.parent / "nope",
        "cohort_folder": store.parent / "cohort",
    }[what]
    with pytest.raises(StoreNotFoundError):
        RadiObject(str(target))
    for cmd in ("info", "verify", "qc"):
        res = run_cli(capsys, cmd, target)
        assert res.rc == 2 and str(target) in error_line(res), (cmd, res.err)


@pytest.mark.parametrize("backend", ["zarr"])
def test_s3_closed_port_fails_fast_and_typed(tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from radiobject import StorageOptions

    t0 = time.monotonic()
    with pytest.raises(RadiObjectError) as info:
        RadiObject(
            "s3://bucket/x",
            storage=StorageOptions(endpoint_url="http://127.0.0.1:1", key="k", secret="s", timeout_s=2, retries=1),
        )
    assert "s3://bucket/x" in str(info.value)
    res = run_cli(
        capsys, "verify", "s3://bucket/x", "--s3-endpoint", "http://127.0.0.1:1", "--s3-key", "k", "--s3-secret", "s"
    )
    assert res.rc == 2 and "s3://bucket/x" in error_line(res)
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("link", ["collections", "collections/T1w/volumes"])
def test_ingest_never_writes_through_a_link_in_the_store(
    store: Path, tmp_path: Path, link: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.hostile.conftest import write_nifti

    target = tmp_path / "outside"
    shutil.move(str(store / link), str(target))
    os.symlink(target, store / link)
    before = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
    m = tmp_path / "new.csv"
    m.write_text(f"subject_id,collection,path\nsub-09,T1w,{write_nifti(tmp_path / 'new.nii.gz')}\n")
    res = run_cli(capsys, "ingest", "--manifest", m, "--no-progress", store)
    assert res.rc in (1, 2) and "symbolic link" in res.out + res.err
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == before  # nothing written outside


def test_tampered_obs_id_never_leaves_the_export_folder(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from radiobject.storage.options import StorageOptions
    from radiobject.storage.tables import FragmentTable

    table = FragmentTable(str(store / "collections" / "T1w" / "obs"), "obs_id", StorageOptions())
    row = table.read().iloc[[0]].copy()
    row["obs_id"] = "../../../evil"
    table.append(row)
    out = tmp_path / "deep" / "er" / "out"
    res = run_cli(capsys, "export", store, out)
    assert res.rc in (1, 2) and "invalid obs_id" in res.out + res.err
    assert not list(tmp_path.rglob("evil*"))
    assert run_cli(capsys, "verify", store).rc in (1, 2)


def test_incomplete_ingest_never_verifies_ok(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    marker = store / "ingest.json"
    assert json.loads(marker.read_text())["complete"] is True
    assert run_cli(capsys, "verify", store).rc == 0
    from radiobject.storage import files
    from radiobject.storage.options import StorageOptions

    files.write_json_atomic(str(marker), {"complete": False, "running": True}, StorageOptions())
    res = run_cli(capsys, "verify", store)
    assert res.rc != 0
    assert "ingest.json" in res.out + res.err and "did not complete" in res.out + res.err
