"""Table head records and fragment chains: a fragment that is gone is a typed error, on a local
disk and on S3 (moto), on read, on append and in ``verify``; legacy tables still read."""

from __future__ import annotations

import io
import pickle
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radiobject.errors import CorruptDataError
from radiobject.storage import files, table_head
from radiobject.storage.checksums import fragment_name_digest
from radiobject.storage.options import StorageOptions
from radiobject.storage.tables import FragmentTable
from tests.s3.conftest import s3_prefix, s3_server  # noqa: F401 - fixtures


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, StorageOptions]:
    """A table folder on a local disk, or on a moto S3 server."""
    if request.param == "local":
        return str(tmp_path / "obs"), StorageOptions()
    return request.getfixturevalue("s3_prefix") + "/obs", request.getfixturevalue("s3_server")


def _rows(*ids: str) -> pd.DataFrame:
    return pd.DataFrame({"obs_id": list(ids), "x": list(range(len(ids)))})


def _build(uri: str, storage: StorageOptions) -> tuple[FragmentTable, str, list[str]]:
    """a, b compacted into a base, then c, d and e appended one per fragment."""
    t = FragmentTable(uri, "obs_id", storage)
    t.append(_rows("a"))
    t.append(_rows("b"))
    t.compact()
    (base,) = t.fragments()
    after = [t.append(_rows(k)) for k in "cde"]
    return t, base, after


def _fresh(uri: str, storage: StorageOptions) -> FragmentTable:
    return FragmentTable(uri, "obs_id", storage)


def _errors(uri: str, storage: StorageOptions) -> list[tuple[str, str, str]]:
    return [f for f in table_head.scan(uri, storage) if f[0] == "error"]


def _expect_missing(uri: str, storage: StorageOptions, name: str) -> None:
    with pytest.raises(CorruptDataError) as info:
        _fresh(uri, storage).read()
    err = info.value
    assert err.part == name and name in str(err) and uri in str(err), str(err)
    assert pickle.loads(pickle.dumps(err)).part == name
    with pytest.raises(CorruptDataError):
        _fresh(uri, storage).live_values("x")
    assert [f[1] for f in _errors(uri, storage)] == [name], table_head.scan(uri, storage)


def test_head_names_the_newest_fragment_and_counts(where: tuple[str, StorageOptions]) -> None:
    uri, storage = where
    t, base, after = _build(uri, storage)
    head = table_head.read_head(uri, storage)
    assert head == table_head.Head(after[-1], 4, 5, base)
    assert list(_fresh(uri, storage).read()["obs_id"]) == list("abcde")
    assert table_head.scan(uri, storage) == []
    t.compact()
    (new_base,) = t.fragments()
    assert table_head.read_head(uri, storage) == table_head.Head(new_base, 1, 5, new_base)
    t.delete(["b"])
    assert table_head.read_head(uri, storage).seq == 2 and list(_fresh(uri, storage).read()["obs_id"]) == list("acde")


@pytest.mark.parametrize("which", ["newest", "middle", "base", "first_after_base"])
def test_deleted_fragment_is_named(where: tuple[str, StorageOptions], which: str) -> None:
    uri, storage = where
    t, base, after = _build(uri, storage)
    gone = {"newest": after[-1], "middle": after[1], "base": base, "first_after_base": after[0]}[which]
    files.remove(files.join(uri, gone), storage)
    _expect_missing(uri, storage, gone)
    if which == "newest":  # an append must not paper over the loss by chaining from d
        with pytest.raises(CorruptDataError, match="missing table fragment"):
            _fresh(uri, storage).append(_rows("f"))
    with pytest.raises(CorruptDataError):  # compaction must not fold the damage away
        _fresh(uri, storage).compact()


def test_only_base_deleted(where: tuple[str, StorageOptions]) -> None:
    uri, storage = where
    t = FragmentTable(uri, "obs_id", storage)
    t.append(_rows("a"))
    t.append(_rows("b"))
    t.compact()
    (base,) = t.fragments()
    files.remove(files.join(uri, base), storage)
    _expect_missing(uri, storage, base)


def test_renamed_fragment_is_missing(where: tuple[str, StorageOptions]) -> None:
    uri, storage = where
    _, _, after = _build(uri, storage)
    old = after[1]
    stamp, rest = old[len("part-") :].split("-", 1)
    new = f"part-{stamp}-{uuid.uuid4().hex[:12]}{rest[12:]}"  # a valid name, digest intact
    files.write_bytes_atomic(files.join(uri, new), files.read_bytes(files.join(uri, old), storage), storage)
    files.remove(files.join(uri, old), storage)
    _expect_missing(uri, storage, old)


def test_truncated_fragment(where: tuple[str, StorageOptions]) -> None:
    uri, storage = where
    _, _, after = _build(uri, storage)
    target = files.join(uri, after[1])
    data = files.read_bytes(target, storage)
    files.write_bytes_atomic(target, data[: len(data) // 2], storage)
    with pytest.raises(CorruptDataError) as info:
        _fresh(uri, storage).read()
    assert info.value.part == after[1]


def test_all_fragments_deleted_head_left(where: tuple[str, StorageOptions]) -> None:
    uri, storage = where
    _, base, after = _build(uri, storage)
    for name in [base, *after]:
        files.remove(files.join(uri, name), storage)
    with pytest.raises(CorruptDataError, match="missing table fragment"):
        _fresh(uri, storage).read()


def _legacy_fragment(uri: str, storage: StorageOptions, df: pd.DataFrame) -> str:
    """A fragment as written before head records: no link in its metadata."""
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{fragment_name_digest(buf.getvalue())}.parquet"
    files.write_bytes_atomic(files.join(uri, name), buf.getvalue(), storage)
    return name


def test_legacy_table_reads_and_is_noted_then_upgrades(where: tuple[str, StorageOptions]) -> None:
    uri, storage = where
    first = _legacy_fragment(uri, storage, _rows("a"))
    _legacy_fragment(uri, storage, _rows("b"))
    assert list(_fresh(uri, storage).read()["obs_id"]) == ["a", "b"]
    assert table_head.scan(uri, storage) == [
        ("note", table_head.HEAD_NAME, "no head record (a table written before head records)")
    ]
    t = _fresh(uri, storage)
    newest = t.append(_rows("c"))
    assert table_head.scan(uri, storage) == [] and list(_fresh(uri, storage).read()["obs_id"]) == list("abc")
    files.remove(files.join(uri, first), storage)  # before the chain: not detectable, still reads
    assert list(_fresh(uri, storage).read()["obs_id"]) == ["b", "c"]
    files.remove(files.join(uri, newest), storage)
    _expect_missing(uri, storage, newest)


def test_writer_stopped_between_fragment_and_head(
    where: tuple[str, StorageOptions], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, storage = where
    t, _, after = _build(uri, storage)
    from radiobject.storage import tables

    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tables, "write_head", crash)
    with pytest.raises(KeyboardInterrupt):
        t.append(_rows("f"))  # its fragment is committed, its head is not
    monkeypatch.undo()
    assert list(_fresh(uri, storage).read()["obs_id"]) == list("abcdef") and _errors(uri, storage) == []
    newest = t.append(_rows("g"))
    head = table_head.read_head(uri, storage)
    assert head.latest == newest and head.seq == 6 and head.rows == 7
    assert table_head.scan(uri, storage) == []
    orphan = t.fragments()[-2]  # f: g chains from it
    files.remove(files.join(uri, orphan), storage)
    _expect_missing(uri, storage, orphan)


def test_deleted_head_loses_nothing_and_is_written_again(where: tuple[str, StorageOptions]) -> None:
    uri, storage = where
    t, _, after = _build(uri, storage)
    files.remove(files.join(uri, table_head.HEAD_NAME), storage)
    assert list(_fresh(uri, storage).read()["obs_id"]) == list("abcde")
    assert [f[0] for f in table_head.scan(uri, storage)] == ["note"]
    t.append(_rows("f"))
    assert table_head.scan(uri, storage) == [] and table_head.read_head(uri, storage).seq == 5


def test_damaged_head_record(where: tuple[str, StorageOptions]) -> None:
    uri, storage = where
    _build(uri, storage)
    target = files.join(uri, table_head.HEAD_NAME)
    data = bytearray(files.read_bytes(target, storage))
    data[data.index(b'"rows"') + 9] ^= 0x01  # a digit of the row count
    files.write_bytes_atomic(target, bytes(data), storage)
    with pytest.raises(CorruptDataError) as info:
        _fresh(uri, storage).read()
    assert info.value.part == table_head.HEAD_NAME
    assert _errors(uri, storage)[0][1] == table_head.HEAD_NAME


# ------------------------------------------------------------------ whole stores and `radiobject verify`
def _store(uri: str, backend: str) -> None:
    from radiobject.formats.image import ImageData
    from radiobject.model.bulk import IngestItem
    from radiobject.model.options import WriteOptions
    from radiobject.model.radi_object import RadiObject

    radi = RadiObject.create(uri, options=WriteOptions(backend=backend))
    ids = ["sub-01", "sub-02"]
    radi.add_subjects(pd.DataFrame({"obs_subject_id": ids}))
    radi.add_collection(
        "T1w",
        [IngestItem(s, s, ImageData(np.full((8, 8, 4), i, np.int16), np.eye(4), {}, "t")) for i, s in enumerate(ids)],
    )


@pytest.mark.parametrize("table", ["collections/T1w/obs", "obs_meta"])
def test_store_catalog_fragment_deleted(
    tmp_path: Path, backend: str, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from radiobject.cli.main import main
    from radiobject.model.radi_object import RadiObject

    uri = str(tmp_path / "store")
    _store(uri, backend)
    assert main(["verify", uri]) == 0
    out = capsys.readouterr().out
    assert "head record" not in out, out
    folder = Path(uri, table)
    gone = sorted(p.name for p in folder.glob("part-*.parquet"))[-1]
    (folder / gone).unlink()
    if table.endswith("/obs"):
        with pytest.raises(CorruptDataError) as info:
            RadiObject(uri).T1w.obs  # noqa: B018 - the read must raise
        assert info.value.part == gone
    assert main(["verify", uri, "--quick"]) == 1
    out = capsys.readouterr().out
    assert gone in out and "missing table fragment" in out, out


# ------------------------------------------------------------------ races: never a false alarm
def _writer(uri: str, storage: StorageOptions, rounds: int, started, queue) -> None:  # a spawned writer
    try:
        t = FragmentTable(uri, "obs_id", storage)
        started.set()
        for k in range(rounds):
            t.append(pd.DataFrame({"obs_id": [f"k{k}"], "x": [k]}))
            if k % 3 == 2:
                t.compact()
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"ERROR {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_reader_and_verify_never_false_alarm_while_one_writer_appends_and_compacts(
    where: tuple[str, StorageOptions],
) -> None:
    import multiprocessing as mp

    uri, storage = where
    rounds = 60 if storage.endpoint_url else 150
    FragmentTable(uri, "obs_id", storage).append(pd.DataFrame({"obs_id": ["first"], "x": [-1]}))
    ctx = mp.get_context("spawn")
    started, queue = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_writer, args=(uri, storage, rounds, started, queue))
    proc.start()
    assert started.wait(60)
    opens, last = 0, -1
    while proc.is_alive() or opens == 0:
        ids = _fresh(uri, storage).read()["obs_id"].tolist()  # head, listing, every fragment
        n = len(ids) - 1
        assert ids == ["first"] + [f"k{k}" for k in range(n)] and n >= last, ids
        assert _errors(uri, storage) == []
        last, opens = n, opens + 1
    proc.join(30)
    assert queue.get(timeout=10) == "ok" and proc.exitcode == 0
    assert opens > 5
    assert _fresh(uri, storage).read()["obs_id"].tolist() == ["first"] + [f"k{k}" for k in range(rounds)]
    assert table_head.scan(uri, storage) == []


def _appender(uri: str, storage: StorageOptions, tag: str, rounds: int, started, queue) -> None:  # spawned
    try:
        t = FragmentTable(uri, "obs_id", storage)
        started.set()
        for k in range(rounds):
            t.append(pd.DataFrame({"obs_id": [f"{tag}{k}"], "x": [k]}))
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"ERROR {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_two_appenders_at_once_no_false_alarm_nothing_lost(where: tuple[str, StorageOptions]) -> None:
    """On S3 there is no lock: both read the same head and chain from the same fragment."""
    import multiprocessing as mp

    uri, storage = where
    rounds = 25
    FragmentTable(uri, "obs_id", storage).append(pd.DataFrame({"obs_id": ["first"], "x": [-1]}))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = []
    for tag in "ab":
        started = ctx.Event()
        procs.append(ctx.Process(target=_appender, args=(uri, storage, tag, rounds, started, queue)))
        procs[-1].start()
        assert started.wait(60)
    while any(p.is_alive() for p in procs):
        ids = _fresh(uri, storage).read()["obs_id"].tolist()
        for tag in "ab":  # each writer's rows: a complete prefix
            mine = [i for i in ids if i.startswith(tag)]
            assert mine == [f"{tag}{k}" for k in range(len(mine))], ids
        assert _errors(uri, storage) == []
    for p in procs:
        p.join(30)
    assert [queue.get(timeout=10) for _ in procs] == ["ok", "ok"]
    ids = set(_fresh(uri, storage).read()["obs_id"])
    assert ids == {"first"} | {f"{t}{k}" for t in "ab" for k in range(rounds)}
    assert _errors(uri, storage) == []
