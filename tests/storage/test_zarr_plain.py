"""The own local Zarr read path (``storage._zarr_plain``) against tensorstore: the same voxels for
every dtype, 3D / 4D, several shards and codecs; damage, missing and truncated data typed and
named (stricter than tensorstore for missing data); its chunk LRU bounded; forked children."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from radiobject.errors import CorruptDataError
from radiobject.storage import ArraySpec, Codec, zarr_backend
from radiobject.storage import _zarr_plain as plain
from radiobject.storage.zarr_backend import ZarrArray, ZarrBackend
from tests.forking import in_forked_child

CASES = [  # shape, dtype, chunks, shards, codec
    ((70, 64, 45), "int16", (16, 16, 16), None, Codec("blosc-lz4hc", 5)),
    ((33, 20, 17), "float32", (8, 8, 8), (16, 16, 8), Codec("blosc-zstd", 3)),  # several shards, edge shards
    ((30, 26, 9, 3), "float64", (8, 8, 8, 3), None, Codec("blosc-lz4", 1, shuffle=False)),  # 4D
    ((25, 19, 11), "uint8", (8, 8, 8), (16, 16, 16), Codec("none", 0)),
    ((21, 18, 10), "bool", (8, 8, 8), None, Codec("blosc-lz4hc", 5)),
    ((17, 16, 9), "int64", (8, 8, 8), None, Codec("blosc-lz4hc", 5)),
    ((17, 16, 9), "uint16", (16, 16, 16), None, Codec("blosc-lz4hc", 5)),  # one chunk larger than the array
]


def _data(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind == "f":
        return rng.normal(100, 30, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -30000), min(info.max, 30000), shape, endpoint=True).astype(dtype)


def _make(tmp_path: Path, case: tuple, seal: bool = True) -> tuple[str, np.ndarray]:
    shape, dtype, chunks, shards, codec = case
    data = _data(shape, dtype, len(shape) * 7 + len(dtype))
    uri = str(tmp_path / "a")
    arr = ZarrBackend().create_array(uri, ArraySpec(shape, dtype, chunks, codec, shards), {})
    arr.write(tuple(slice(0, s) for s in shape), data)
    if seal:
        arr.seal()
    return uri, data


def _regions(shape: tuple[int, ...], n: int, seed: int) -> list[tuple[slice, ...]]:
    rng = np.random.default_rng(seed)
    out = [tuple(slice(0, s) for s in shape)]
    for _ in range(n):
        lo = [int(rng.integers(0, s)) for s in shape]
        out.append(tuple(slice(a, int(rng.integers(a + 1, s + 1))) for a, s in zip(lo, shape, strict=True)))
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{len(c[0])}d-{c[4].name}")
@pytest.mark.parametrize("threads", [1, 3])
def test_the_own_reader_returns_exactly_what_tensorstore_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: tuple, threads: int
) -> None:
    monkeypatch.setattr(zarr_backend, "DECODE_THREADS", threads)
    monkeypatch.setattr(plain, "MIN_CHUNKS_PER_PIECE", 2)  # small test arrays: reads cut for the pool too
    uri, data = _make(tmp_path, case)
    ours = ZarrBackend().open_array(uri)
    assert isinstance(ours, plain.PlainZarrArray)
    monkeypatch.setattr(zarr_backend, "PLAIN_READS", False)
    engine = ZarrBackend().open_array(uri)
    assert isinstance(engine, ZarrArray)
    for region in _regions(case[0], 40, threads):
        want = engine.read(region)
        np.testing.assert_array_equal(want, data[region])
        got = ours.read(region)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(ours.read_async(region).result(), want)


@pytest.mark.parametrize("name", ["zstd", "gzip"])
def test_other_codecs_stay_with_tensorstore(tmp_path: Path, name: str) -> None:
    uri, data = _make(tmp_path, ((20, 18, 9), "int16", (8, 8, 8), None, Codec(name, 3)))
    arr = ZarrBackend().open_array(uri)
    assert isinstance(arr, ZarrArray)
    np.testing.assert_array_equal(arr.read(tuple(slice(0, s) for s in data.shape)), data)


def _shard(uri: str) -> Path:
    return next(p for p in sorted(Path(uri, "c").rglob("*")) if p.is_file())


def _flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


CASE = CASES[0]
FULL = tuple(slice(0, s) for s in CASE[0])


@pytest.mark.parametrize("where", ["chunk", "index", "index-crc"])
def test_one_flipped_bit_in_a_shard_is_typed_and_named(tmp_path: Path, where: str) -> None:
    uri, _ = _make(tmp_path, CASE, seal=False)  # unsealed: the checksums decide, not the size record
    arr = ZarrBackend().open_array(uri)
    shard = _shard(uri)
    size = shard.stat().st_size
    _flip(shard, {"chunk": size // 3, "index": size - 40, "index-crc": size - 2}[where])
    for read in (lambda: arr.read(FULL), lambda: arr.read_async(FULL).result()):
        with pytest.raises(CorruptDataError) as info:
            read()
        assert "damaged chunk data" in info.value.reason
        assert info.value.part.startswith("c/0/0/0")
        assert ("inner chunk (" in info.value.part) == (where == "chunk")


def test_missing_and_truncated_data_of_a_sealed_array_is_an_error_never_zeros(tmp_path: Path) -> None:
    uri, data = _make(tmp_path, CASES[1])  # several shards
    arr = ZarrBackend().open_array(uri)  # opened whole (the record check passes) ...
    np.testing.assert_array_equal(arr.read(tuple(slice(0, s) for s in data.shape)), data)
    shard = _shard(uri)
    shard.unlink()  # ... then a shard goes away
    with pytest.raises(CorruptDataError, match="shard file of the array is missing"):
        arr.read(tuple(slice(0, s) for s in data.shape))
    uri2, data2 = _make(tmp_path / "b", CASE)
    arr2 = ZarrBackend().open_array(uri2)
    shard2 = _shard(uri2)
    shard2.write_bytes(shard2.read_bytes()[:100])  # truncated after open
    with pytest.raises(CorruptDataError, match="shorter than its"):
        arr2.read(FULL)


def test_an_empty_index_entry_is_damage_in_a_sealed_array(tmp_path: Path) -> None:
    import struct

    import google_crc32c

    uri, data = _make(tmp_path, CASE)
    shard = _shard(uri)
    raw = bytearray(shard.read_bytes())
    n = int(np.prod([-(-s // c) for s, c in zip(CASE[0], CASE[2], strict=True)]))  # one shard: all chunks
    index = raw[-(16 * n + 4) : -4]
    index[:16] = struct.pack("<QQ", (1 << 64) - 1, (1 << 64) - 1)  # chunk (0, 0, 0) "not stored"
    raw[-(16 * n + 4) :] = bytes(index) + struct.pack("<I", google_crc32c.value(bytes(index)))
    shard.write_bytes(bytes(raw))
    arr = plain.PlainReader(uri, uri, plain.plain_layout(_meta(uri)), True, lambda: 1, lambda: 0)
    with pytest.raises(CorruptDataError, match="missing from the shard index"):
        arr.read((slice(0, 4), slice(0, 4), slice(0, 4)), np.empty((4, 4, 4), np.int16))
    lax = plain.PlainReader(uri, uri, plain.plain_layout(_meta(uri)), False, lambda: 1, lambda: 0)
    out = lax.read((slice(0, 4), slice(0, 4), slice(0, 4)), np.ones((4, 4, 4), np.int16))
    assert not out.any()  # unsealed (an array written sparsely elsewhere): the fill value, as Zarr says


def _meta(uri: str) -> dict:
    import json

    return json.loads(Path(uri, "zarr.json").read_text())


def test_a_lying_blosc_header_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    meta_layout = plain.plain_layout(
        {**_meta(_make(tmp_path, CASE)[0])}
    )  # a real layout; the chunk below is fed by hand
    assert meta_layout is not None
    reader = plain.PlainReader(str(tmp_path), "x", meta_layout, True, lambda: 1, lambda: 0)
    import struct

    body = bytearray(struct.pack("<BBBBIII", 2, 1, 1, 2, 1 << 31, 0, 16))  # claims 2 GiB
    with pytest.raises(CorruptDataError, match="blosc header"):
        fd = os.open(tmp_path / "chunk", os.O_CREAT | os.O_RDWR)
        try:
            os.write(fd, bytes(body) + struct.pack("<I", __import__("google_crc32c").value(bytes(body))))
            reader._chunk(fd, 0, len(body) + 4, 10_000, "c/0/0/0", (0, 0, 0))
        finally:
            os.close(fd)


def test_a_chunk_stored_as_is_is_read_without_decoding_and_its_header_checked(tmp_path: Path) -> None:
    """blosc stores an incompressible chunk after its header with the MEMCPYED flag: read as is;
    real data written by tensorstore takes this path too (and reads equal, above)."""
    import struct

    import google_crc32c

    uri, data = _make(tmp_path, CASE)
    layout = plain.plain_layout(_meta(uri))
    assert layout is not None
    reader = plain.PlainReader(uri, uri, layout, True, lambda: 1, lambda: 0)
    shard = Path(uri, "c", "0", "0", "0").read_bytes()
    n = 16 * reader._n + 4
    pairs = struct.unpack(f"<{2 * reader._n}Q", shard[-n:-4])
    flags = [shard[o + 2] for o in pairs[0::2]]
    assert any(f & plain._BLOSC_MEMCPYED for f in flags), "no chunk of random int16 stored as is"

    chunk = _data((16, 16, 16), "int16", 3)
    nbytes = chunk.nbytes

    def feed(header: bytes, body: bytes) -> np.ndarray | None:
        blob = header + body
        blob += struct.pack("<I", google_crc32c.value(blob))
        path = tmp_path / "chunk"
        path.write_bytes(blob)
        fd = os.open(path, os.O_RDONLY)
        try:
            return reader._chunk(fd, 0, len(blob), 1 << 20, "c/0/0/0", (0, 0, 0))
        finally:
            os.close(fd)

    header = struct.pack("<BBBBIII", 2, 1, 0x02 | 0x01, 2, nbytes, nbytes, nbytes + 16)
    got = feed(header, chunk.tobytes())
    assert got is not None and np.array_equal(got, chunk)
    # a flipped byte in the stored voxels of such a chunk (of the real array too): never read as data
    raw = bytearray(shard)
    o = next(o for o, f in zip(pairs[0::2], flags, strict=True) if f & plain._BLOSC_MEMCPYED)
    raw[o + 100] ^= 0x01
    Path(uri, "c", "0", "0", "0").write_bytes(bytes(raw))
    reader = plain.PlainReader(uri, uri, layout, True, lambda: 1, lambda: 0)
    with pytest.raises(CorruptDataError, match="crc32c mismatch"):
        reader.read(tuple(slice(0, s) for s in data.shape), np.empty(data.shape, data.dtype))
    # the flag with sizes that do not add up: handed to blosc, which refuses it (typed, named)
    with pytest.raises(CorruptDataError, match=r"c/0/0/0 inner chunk \(0, 0, 0\)"):
        feed(struct.pack("<BBBBIII", 2, 1, 0x02, 2, nbytes, nbytes, nbytes - 8), chunk.tobytes()[:-24])


def test_the_chunk_lru_is_bounded_in_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, data = _make(tmp_path, CASE)
    budget = 3 * 16**3 * 2  # three int16 chunks
    monkeypatch.setattr(zarr_backend, "chunk_pool_bytes", lambda: budget)
    plain._CHUNKS.clear()
    arr = ZarrBackend().open_array(uri)
    np.testing.assert_array_equal(arr.read(FULL), data)
    assert 0 < plain._CHUNKS.nbytes <= budget and len(plain._CHUNKS) == 3
    np.testing.assert_array_equal(arr.read(FULL), data)  # evicted chunks are decoded again


def test_recycled_buffers_never_mix_chunks_under_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny LRU (constant eviction, buffers decoded into again) read by 4 threads at once: every
    read is exact (an entry being copied from is never reused)."""
    from concurrent.futures import ThreadPoolExecutor

    uri, data = _make(tmp_path, CASE)
    monkeypatch.setattr(zarr_backend, "chunk_pool_bytes", lambda: 4 * 16**3 * 2)
    plain._CHUNKS.clear()
    arr = ZarrBackend().open_array(uri)
    regions = _regions(CASE[0], 400, 5)

    def check(region: tuple[slice, ...]) -> bool:
        return bool(np.array_equal(arr.read(region), data[region]))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(check, regions))


def test_a_pinned_evicted_buffer_is_not_handed_out() -> None:
    from radiobject.storage._chunk_pool import ChunkPool

    pool = ChunkPool()
    a_buf = pool.buffer(8)
    a = pool.put(("a",), a_buf.view(np.int16), a_buf, budget=8)
    assert a is not None
    reader = pool.pin(("a",))  # a second reader copies from it ...
    pool.unpin(a)
    b_buf = pool.buffer(8)
    assert b_buf is not a_buf
    pool.put(("b",), b_buf.view(np.int16), b_buf, budget=8)  # ... while it is evicted
    assert pool.buffer(8) is not a_buf  # still pinned: not reused
    assert reader is not None
    pool.unpin(reader)
    assert pool.buffer(8) is a_buf  # now it is a spare


def test_a_rewritten_shard_is_read_anew(tmp_path: Path) -> None:
    """Index and chunks are cached per file identity (inode, size, mtime): a rewritten file is
    never served from what was cached for the old one."""
    uri, data = _make(tmp_path, CASE, seal=False)
    arr = ZarrBackend().open_array(uri)
    np.testing.assert_array_equal(arr.read(FULL), data)
    new = (data[::-1] + 1).astype(data.dtype)
    arr.write(FULL, new)  # through tensorstore, the same handle
    np.testing.assert_array_equal(arr.read(FULL), new)
    np.testing.assert_array_equal(ZarrBackend().open_array(uri).read(FULL), new)


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_forked_child_reads_through_the_own_reader(tmp_path: Path) -> None:
    uri, data = _make(tmp_path, CASE)
    arr = ZarrBackend().open_array(uri)
    arr.read(FULL)  # pool and LRU in use in the parent

    def child_reads() -> bool:
        child = ZarrBackend().open_array(uri)
        ok = isinstance(child, plain.PlainZarrArray) and np.array_equal(child.read(FULL), data)
        return ok and np.array_equal(arr.read((slice(3, 40), slice(0, 64), slice(7, 9))), data[3:40, :, 7:9])

    assert in_forked_child(child_reads) is True


def test_a_fork_while_another_thread_holds_the_readers_locks_does_not_deadlock(tmp_path: Path) -> None:
    import threading

    uri, data = _make(tmp_path, CASE)
    arr = ZarrBackend().open_array(uri)
    arr.read(FULL)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # a reader thread of the parent, mid-read at the moment of the fork
        with plain._CHUNKS._lock, plain._POOLS_LOCK:
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:

        def child_reads() -> bool:
            child = ZarrBackend().open_array(uri)
            return np.array_equal(child.read(FULL), data) and np.array_equal(child.read_async(FULL).result(), data)

        got = in_forked_child(child_reads)
        assert got is not None, "the forked child deadlocked on a lock its parent's thread held at the fork"
        assert got
    finally:
        release.set()
        t.join()
