"""Zarr reads split into per-core pieces: the pieces tile the region, the data and the errors are
those of one whole read."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from radiobject.errors import CorruptDataError
from radiobject.storage import ArraySpec, Codec, zarr_backend
from radiobject.storage._zarr_read import MIN_CHUNKS_PER_PIECE, split_region
from radiobject.storage.zarr_backend import ZarrBackend

SHAPE = (70, 64, 45)
CHUNKS = (16, 16, 16)


def _covers_once(region: tuple[slice, ...], pieces: list[tuple[slice, ...]]) -> bool:
    seen = np.zeros([r.stop for r in region], np.int8)
    for p in pieces:
        seen[p] += 1
    inside = seen[region]
    return bool((inside == 1).all()) and int(seen.sum()) == inside.size


@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_pieces_tile_the_region_on_chunk_boundaries(parts: int) -> None:
    rng = np.random.default_rng(parts)
    for _ in range(300):
        lo = [int(rng.integers(0, s)) for s in SHAPE]
        region = tuple(slice(a, int(rng.integers(a + 1, s + 1))) for a, s in zip(lo, SHAPE, strict=True))
        pieces = split_region(region, CHUNKS, parts)
        assert 1 <= len(pieces) <= max(1, parts)
        assert _covers_once(region, pieces)
        for a, b in itertools.pairwise(pieces):  # in order, cut on one axis at a chunk boundary
            axis = next(i for i in range(3) if a[i] != b[i])
            assert a[axis].stop == b[axis].start and b[axis].start % CHUNKS[axis] == 0
        spans = [(r.stop - 1) // c - r.start // c + 1 for r, c in zip(region, CHUNKS, strict=True)]
        if parts > 1 and max(spans) >= 2 and np.prod(spans) >= 2 * MIN_CHUNKS_PER_PIECE:
            assert len(pieces) >= 2  # big enough reads are split


def test_small_or_single_chunk_reads_stay_whole() -> None:
    assert split_region((slice(3, 9), slice(0, 16), slice(20, 30)), CHUNKS, 4) == [
        (slice(3, 9), slice(0, 16), slice(20, 30))
    ]
    assert len(split_region((slice(0, 32), slice(0, 32), slice(0, 16)), CHUNKS, 4)) == 1  # 4 chunks < 8 per piece
    assert split_region((slice(0, 64), slice(0, 64), slice(0, 45)), CHUNKS, 1) == [
        (slice(0, 64), slice(0, 64), slice(0, 45))
    ]


def _array(tmp_path: Path) -> tuple[ZarrBackend, str, np.ndarray]:
    be = ZarrBackend()
    data = np.random.default_rng(0).integers(0, 3000, SHAPE).astype(np.int16)
    uri = str(tmp_path / "a")
    arr = be.create_array(uri, ArraySpec(SHAPE, "int16", CHUNKS, Codec("blosc-lz4hc", 5)), {})
    arr.write(tuple(slice(0, s) for s in SHAPE), data)
    return be, uri, data


@pytest.mark.parametrize("plain", [True, False], ids=["own-reader", "tensorstore"])
@pytest.mark.parametrize("threads", [1, 2, 5])
def test_split_reads_equal_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int, plain: bool) -> None:
    monkeypatch.setattr(zarr_backend, "DECODE_THREADS", threads)
    monkeypatch.setattr(zarr_backend, "PLAIN_READS", plain)
    be, uri, data = _array(tmp_path)
    arr = be.open_array(uri)
    rng = np.random.default_rng(threads)
    for _ in range(60):
        lo = [int(rng.integers(0, s)) for s in SHAPE]
        region = tuple(slice(a, int(rng.integers(a + 1, s + 1))) for a, s in zip(lo, SHAPE, strict=True))
        np.testing.assert_array_equal(arr.read(region), data[region])
        np.testing.assert_array_equal(arr.read_async(region).result(), data[region])
        out = np.full([r.stop - r.start for r in region], -1, np.int16)
        assert arr.read(region, out=out) is out
        np.testing.assert_array_equal(out, data[region])


@pytest.mark.parametrize("plain", [True, False], ids=["own-reader", "tensorstore"])
def test_a_damaged_chunk_in_any_piece_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plain: bool) -> None:
    monkeypatch.setattr(zarr_backend, "DECODE_THREADS", 4)
    monkeypatch.setattr(zarr_backend, "PLAIN_READS", plain)
    be, uri, data = _array(tmp_path)
    shard = next(p for p in Path(uri).rglob("*") if p.is_file() and p.parent.name != Path(uri).name)
    raw = bytearray(shard.read_bytes())
    raw[len(raw) * 3 // 4] ^= 0x10  # a chunk late in the shard: read by the last piece of a full read
    shard.write_bytes(bytes(raw))
    arr2 = be.open_array(uri)  # unsealed test array: no record check on open, the chunk crc32c decides
    full = tuple(slice(0, s) for s in SHAPE)
    assert len(split_region(full, CHUNKS, 4)) == 4
    for read in (lambda: arr2.read(full), lambda: arr2.read_async(full).result()):
        with pytest.raises(CorruptDataError) as info:
            read()
        assert "damaged" in info.value.reason and "inner chunk" in info.value.part
