"""Damaged stores never read as good: bit flips, deleted and truncated files, on both backends.

Each test damages one real file of a freshly written store, then checks that (1) a reader gets a
``CorruptDataError`` naming store, collection, subject and the file, and (2) ``radiobject verify``
reports the damage (naming the file) with a non-zero exit.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiobject.cli.main import main
from radiobject.errors import CorruptDataError, FormatVersionError, StoreError
from radiobject.formats.image import ImageData
from radiobject.model.bulk import IngestItem
from radiobject.model.integrity import verify_store
from radiobject.model.options import WriteOptions
from radiobject.model.radi_object import RadiObject
from radiobject.model.volume import Volume
from radiobject.storage import checksums, integrity
from radiobject.storage.zarr_check import diagnose_shard

SHAPE = (40, 36, 30)  # 2 x 2 x 1 inner chunks of 32: several chunks per shard


def _image(seed: int) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 1000, SHAPE).astype(np.int16)
    data[:, :, 24:] = 0  # some all-zero chunks: they must be stored too
    return data


def _make(uri: str, backend: str, n: int = 2) -> dict[str, np.ndarray]:
    radi = RadiObject.create(uri, options=WriteOptions(backend=backend))
    ids = [f"sub-{i:02d}" for i in range(n)]
    radi.add_subjects(pd.DataFrame({"obs_subject_id": ids}))
    arrays = {s: _image(i) for i, s in enumerate(ids)}
    radi.add_collection(
        "T1w", [IngestItem(s, s, ImageData(a, np.diag([1.0, 1.0, 2.0, 1.0]), {}, "t")) for s, a in arrays.items()]
    )
    return arrays


@pytest.fixture
def store(tmp_path: Path, backend: str) -> tuple[str, dict[str, np.ndarray]]:
    uri = str(tmp_path / "store")
    return uri, _make(uri, backend)


def _volume_dir(uri: str, subject: str = "sub-01") -> Path:
    return Path(RadiObject(uri).T1w.volume(subject).uri)


def _data_file(vol: Path) -> Path:
    """The largest chunk data file: the Zarr shard, or TileDB's attribute tile file."""
    cands = [
        p
        for p in vol.rglob("*")
        if p.is_file()
        and (p.parent.name != vol.name or p.name == "0")
        and (p.name == "0" or p.name.endswith(".tdb") and p.name.startswith("a"))
    ]
    return max(cands, key=lambda p: p.stat().st_size)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x04
    path.write_bytes(bytes(data))


def _read_fresh(uri: str, subject: str = "sub-01") -> np.ndarray:
    return RadiObject(uri).T1w.volume(subject).to_numpy()


def _expect_corrupt(uri: str, subject: str = "sub-01") -> CorruptDataError:
    with pytest.raises(CorruptDataError) as info:
        _read_fresh(uri, subject)
    err = info.value
    assert err.store == uri and err.collection == "T1w" and err.subject == subject
    assert pickle.loads(pickle.dumps(err)).subject == subject
    return err


def _verify_fails(uri: str, capsys: pytest.CaptureFixture[str], needle: str, *, quick: bool = False) -> str:
    capsys.readouterr()
    assert main(["verify", uri] + (["--quick"] if quick else [])) == 1
    out = capsys.readouterr().out
    assert needle in out, out
    return out


def test_clean_store_reads_and_verifies(
    store: tuple[str, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]
) -> None:
    uri, arrays = store
    for s, a in arrays.items():
        np.testing.assert_array_equal(_read_fresh(uri, s), a)
    assert main(["verify", uri]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["verify", uri, "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["volumes"] == 2 and report["files_checked"] > 4
    assert not [f for f in report["findings"] if "no checksum record" in f["what"]]


def test_bit_flip_in_chunk_data(
    store: tuple[str, dict[str, np.ndarray]], backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, arrays = store
    target = _data_file(_volume_dir(uri))
    _flip(target, target.stat().st_size // 3)
    err = _expect_corrupt(uri)
    assert "damaged" in err.reason and target.name in err.part  # the shard / tile file (Zarr: and the chunk)
    np.testing.assert_array_equal(_read_fresh(uri, "sub-00"), arrays["sub-00"])  # the other is fine
    out = _verify_fails(uri, capsys, target.name)
    assert "sub-01" in out and "sub-00" not in out
    if backend == "zarr":
        assert "inner chunk" in out and "fails its crc32c" in out


def test_zarr_shard_index_flip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = str(tmp_path / "store")
    _make(uri, "zarr")
    shard = _data_file(_volume_dir(uri))
    _flip(shard, shard.stat().st_size - 10)  # inside the index (16 bytes per chunk + crc32c, at the end)
    _expect_corrupt(uri)
    _verify_fails(uri, capsys, "shard index fails its crc32c")


def test_zarr_every_chunk_is_stored_and_tiles_the_shard(tmp_path: Path) -> None:
    vol = Volume.from_numpy(str(tmp_path / "v"), np.zeros(SHAPE, np.uint8))  # all fill value
    shard = tmp_path / "v" / "c" / "0" / "0" / "0"
    n = 2 * 2 * 1
    index = shard.read_bytes()[-(16 * n + 4) :]
    pairs = struct.unpack(f"<{2 * n}Q", index[:-4])
    assert all(p != (1 << 64) - 1 for p in pairs)  # no "missing" entry: a lost chunk cannot be silent
    assert diagnose_shard(vol.uri, "c/0/0/0", vol._location.storage) == ""


def test_tiledb_fragment_metadata_flip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = str(tmp_path / "store")
    _make(uri, "tiledb")
    meta = next(_volume_dir(uri).rglob("__fragment_metadata.tdb"))
    _flip(meta, meta.stat().st_size // 2)  # TileDB itself may crash on this: checked before it reads
    err = _expect_corrupt(uri)
    assert "__fragment_metadata.tdb" in err.part
    _verify_fails(uri, capsys, "__fragment_metadata.tdb", quick=True)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_missing_or_truncated_data_file(
    store: tuple[str, dict[str, np.ndarray]], damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, _ = store
    target = _data_file(_volume_dir(uri))
    if damage == "delete":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    err = _expect_corrupt(uri)
    assert target.name in err.part
    needle = "missing" if damage == "delete" else "truncated"
    _verify_fails(uri, capsys, needle, quick=True)
    _verify_fails(uri, capsys, needle)


def test_deleted_fragment_directory_tiledb_or_whole_array(
    store: tuple[str, dict[str, np.ndarray]], backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    uri, _ = store
    vol = _volume_dir(uri)
    if backend == "tiledb":
        shutil.rmtree(next((vol / "__fragments").iterdir()))
    else:
        shutil.rmtree(vol / "c")
    _expect_corrupt(uri)
    _verify_fails(uri, capsys, "missing", quick=True)
    shutil.rmtree(vol)
    _expect_corrupt(uri)
    _verify_fails(uri, capsys, "array is missing", quick=True)


def test_integrity_record_damage(store: tuple[str, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]) -> None:
    uri, _ = store
    record = _volume_dir(uri) / integrity.MANIFEST
    text = record.read_text()
    record.write_text(text.replace('"size": ', '"size": 1', 1))
    _expect_corrupt(uri)
    _verify_fails(uri, capsys, integrity.MANIFEST, quick=True)
    record.unlink()
    err = _expect_corrupt(uri)
    assert "integrity record missing" in err.reason
    _verify_fails(uri, capsys, "integrity record missing", quick=True)


def test_array_metadata_flip(
    store: tuple[str, dict[str, np.ndarray]], backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, _ = store
    vol = _volume_dir(uri)
    if backend == "zarr":
        target = vol / "zarr.json"
        text = target.read_text()
        target.write_text(text.replace("1.0", "1.5", 1))  # an affine value: still valid JSON
    else:
        target = max((vol / "__meta").iterdir(), key=lambda p: p.stat().st_size)
        _flip(target, target.stat().st_size // 2)
    with pytest.raises(CorruptDataError):
        Volume(str(vol))
    _expect_corrupt(uri)
    _verify_fails(uri, capsys, target.name, quick=True)


def test_table_fragment_flip(store: tuple[str, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]) -> None:
    uri, _ = store
    part = next(Path(uri, "collections", "T1w", "obs").glob("part-*.parquet"))
    _flip(part, part.stat().st_size // 2)
    with pytest.raises(CorruptDataError) as info:
        RadiObject(uri).T1w.obs  # noqa: B018 - the open must raise
    assert part.name in str(info.value)
    _verify_fails(uri, capsys, part.name, quick=True)


def test_json_marker_flip(store: tuple[str, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]) -> None:
    uri, _ = store
    marker = Path(uri, "collections", "T1w", "collection.json")
    marker.write_text(marker.read_text().replace('"T1w"', '"T1x"'))  # valid JSON, wrong content
    with pytest.raises(CorruptDataError):
        RadiObject(uri).T1w  # noqa: B018 - the open must raise
    _verify_fails(uri, capsys, "collection.json", quick=True)
    group = Path(uri, "collections", "zarr.json")
    if group.exists():
        marker.write_text(marker.read_text().replace('"T1x"', '"T1w"'))
        group.write_text(group.read_text().replace('"collections"', '"collectionz"'))
        _verify_fails(uri, capsys, "collections/zarr.json", quick=True)


def test_newer_format_versions_are_refused(
    store: tuple[str, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]
) -> None:
    uri, _ = store
    record_path = _volume_dir(uri) / integrity.MANIFEST
    record = json.loads(record_path.read_text())
    record["version"] = 99
    integrity.write_record(str(record_path.parent), checksums.seal_json(record), integrity.StorageOptions())
    with pytest.raises(FormatVersionError):
        _read_fresh(uri)
    _verify_fails(uri, capsys, "newer")
    marker = Path(uri, "collections", "T1w", "collection.json")
    meta = json.loads(marker.read_text())
    meta["version"] = 7
    marker.write_text(json.dumps(checksums.seal_json(meta)))
    with pytest.raises(FormatVersionError):
        RadiObject(uri).T1w  # noqa: B018 - the open must raise
    _verify_fails(uri, capsys, "format version 7")


def test_legacy_arrays_without_record_still_read(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = str(tmp_path / "store")
    from radiobject.storage import tiledb_backend, zarr_backend

    monkeypatch.setattr(zarr_backend.ZarrArray, "seal", lambda self: "")
    monkeypatch.setattr(tiledb_backend.TileDBArray, "seal", lambda self: "")
    arrays = _make(uri, backend)
    monkeypatch.undo()
    np.testing.assert_array_equal(_read_fresh(uri), arrays["sub-01"])
    assert main(["verify", uri]) == 0
    assert "no checksum record" in capsys.readouterr().out


def test_zarr_python_fallback_checks_checksums(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radiobject.storage import zarr_backend

    uri = str(tmp_path / "store")
    arrays = _make(uri, "zarr")
    monkeypatch.setitem(zarr_backend._ts_state, "forked_after_use", True)  # as in a forked child
    monkeypatch.setattr(zarr_backend, "PLAIN_READS", False)  # else the own reader serves it
    vol = RadiObject(uri).T1w.volume("sub-01")
    assert isinstance(vol._array(), zarr_backend.ZarrPythonArray)
    np.testing.assert_array_equal(vol.to_numpy(), arrays["sub-01"])
    shard = _data_file(Path(vol.uri))
    _flip(shard, 100)
    with pytest.raises(CorruptDataError) as info:
        RadiObject(uri).T1w.volume("sub-01").to_numpy()
    assert info.value.subject == "sub-01"
    shard.unlink()
    with pytest.raises(CorruptDataError):
        RadiObject(uri).T1w.volume("sub-01").to_numpy()


def test_ml_reader_raises_corrupt(store: tuple[str, dict[str, np.ndarray]]) -> None:
    from radiobject.ml.reader import VolumeReader

    uri, _ = store
    target = _data_file(_volume_dir(uri))
    _flip(target, target.stat().st_size // 3)
    reader = VolumeReader.from_radi(RadiObject(uri), ["T1w"])
    reader.read_raw(reader.index_of("sub-00"), "T1w")
    with pytest.raises(CorruptDataError) as info:
        reader.read_raw(reader.index_of("sub-01"), "T1w")
    assert info.value.subject == "sub-01"


def test_verify_api_report(store: tuple[str, dict[str, np.ndarray]]) -> None:
    uri, _ = store
    assert verify_store(uri).ok
    target = _data_file(_volume_dir(uri, "sub-00"))
    target.unlink()
    report = verify_store(uri, quick=True)
    assert not report.ok and any(target.name in f.where for f in report.errors)
    assert isinstance(CorruptDataError("u", "r"), StoreError)


def test_tiledb_group_metadata_flip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = str(tmp_path / "store")
    _make(uri, "tiledb")
    meta = next(Path(uri, "collections", "T1w", "__meta").iterdir())
    assert main(["verify", uri, "--quick"]) == 0
    _flip(meta, meta.stat().st_size // 2)
    _verify_fails(uri, capsys, f"collections/T1w/__meta/{meta.name}", quick=True)


@pytest.mark.slow
def test_one_flipped_byte_in_any_file_is_found(tmp_path: Path, backend: str) -> None:
    """Every non-empty file of a store, one at a time: one flipped byte makes verify fail, naming it."""
    uri = str(tmp_path / "store")
    _make(uri, backend)
    rng = np.random.default_rng(7)
    targets = sorted(p for p in Path(uri).rglob("*") if p.is_file() and p.stat().st_size and not p.name.startswith("."))
    assert len(targets) > 10
    missed = []
    for path in targets:
        original = path.read_bytes()
        _flip(path, int(rng.integers(0, len(original))))
        try:
            report = verify_store(uri)
            rel = str(path.relative_to(uri))
            if report.ok or not any(
                rel.startswith(f.where) or f.where.startswith(rel) or rel in f.what for f in report.errors
            ):
                missed.append((rel, [str(f) for f in report.errors]))
        finally:
            path.write_bytes(original)
    assert not missed, missed
    assert verify_store(uri).ok
