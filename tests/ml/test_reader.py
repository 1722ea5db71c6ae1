"""The reader's chunk-granular read path: any cache gives exactly the voxels of no cache."""

from __future__ import annotations

import numpy as np
import pytest

from radiobject import ImageData, RadiObject, WriteOptions
from radiobject.ml.cache import DiskCache, InMemoryCache, NoCache, SharedMemoryCache
from radiobject.ml.cache import chunks as chunk_cache
from radiobject.ml.cache.chunks import read_chunked
from radiobject.ml.reader import VolumeReader
from radiobject.storage import zarr_backend
from tests.ml._stores import coded_volume, make_store

SHAPE = (20, 24, 16)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("reader") / "radi", "zarr", n=3, shape=SHAPE, chunks=(8, 8, 8))


def _caches(tmp_path, budget: int):
    return {
        "memory": InMemoryCache(budget),
        "disk": DiskCache(tmp_path / "disk", budget),
        "shm": SharedMemoryCache(budget),
    }


ORIGINS = [(0, 0, 0), (5, 7, 3), (12, 16, 8), (-3, 20, 10), (15, -2, -4), (7, 9, 2)]


@pytest.mark.parametrize("mode", ["whole", "chunks"])
@pytest.mark.parametrize("kind", ["memory", "disk", "shm"])
def test_patches_through_a_cache_equal_the_store(store, tmp_path, monkeypatch, kind: str, mode: str) -> None:
    if mode == "chunks":  # the cohort fits: force chunk entries, as for a cohort larger than the cache
        monkeypatch.setattr(chunk_cache, "WHOLE_VOLUMES_UP_TO", 0.0)
    plain = VolumeReader.from_radi(store, ["T1w", "FLAIR"], "seg")
    cache = _caches(tmp_path, 64 << 20)[kind]
    try:
        cached = plain.with_cache(cache)
        for rep in range(2):  # cold, then warm
            for s in range(len(plain)):
                for o in ORIGINS:
                    want = plain.read_patch(s, o, (8, 9, 7))
                    got = cached.read_patch(s, o, (8, 9, 7))
                    np.testing.assert_array_equal(got[0], want[0])
                    np.testing.assert_array_equal(got[1], want[1])
                    img = np.empty((2, 8, 9, 7), np.float32)
                    lab = np.empty((1, 8, 9, 7), want[1].dtype)
                    cached.read_patch_into(s, o, (8, 9, 7), img, lab)
                    np.testing.assert_array_equal(img, want[0])
                    np.testing.assert_array_equal(lab, want[1])
            if rep == 0:
                misses = cache.misses
        if kind == "memory" and mode == "chunks":  # held in tensorstore's pool, grown to the budget
            assert cached._local()["pooled"] is True and cached._pooled()
            assert zarr_backend.chunk_pool_bytes() >= cache.max_bytes
            assert cache.hits == cache.misses == len(cache) == 0  # nothing twice in memory
            return
        assert cache.misses == misses and cache.hits > 0  # the warm pass decoded nothing
        if mode == "whole":
            assert len(cache) == 3 * 3  # one entry per volume
            assert cached._local()["whole"] is True
            for (i, name), key in cached._local()["whole_keys"].items():  # the version is in every key
                assert key.endswith(f"|{cached.volume(i, name).info.version}|volume")
        else:
            assert 3 * 3 < len(cache) <= 3 * 3 * 18  # chunks (3 x 3 x 2 per volume), never whole volumes
        whole = cached.read_raw(1, "T1w")
        np.testing.assert_array_equal(whole, coded_volume(1, SHAPE))
    finally:
        if kind == "shm":
            cache.close()


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_whole_volumes_fall_back_to_chunks_once_evicted(store, tmp_path, kind: str) -> None:
    vol_bytes = int(np.prod(SHAPE)) * 4
    # each one-subject reader's cohort fits, all three together do not: whole volumes get evicted
    cache = InMemoryCache(2 * vol_bytes) if kind == "memory" else DiskCache(tmp_path / "d", 2 * vol_bytes)
    full = VolumeReader.from_radi(store, "T1w")
    readers = [full.subset([i]).with_cache(cache) for i in range(3)]
    rng = np.random.default_rng(1)
    for _ in range(60):
        i = int(rng.integers(3))
        o = [int(rng.integers(-4, n)) for n in SHAPE]
        got, _ = readers[i].read_patch(0, o, (9, 9, 9), with_label=False)
        want, _ = full.read_patch(i, o, (9, 9, 9), with_label=False)
        np.testing.assert_array_equal(got, want)
        assert cache.nbytes <= cache.max_bytes
    assert not all(r._local()["whole"] for r in readers)  # at least one saw its volume evicted
    assert all(r._local()["whole"] is not None for r in readers)


def test_threads_filling_whole_volumes_together_keep_whole_volumes(store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cache = InMemoryCache(64 << 20)
    reader = VolumeReader.from_radi(store, ["T1w", "FLAIR"], "seg").with_cache(cache)
    plain = VolumeReader.from_radi(store, ["T1w", "FLAIR"], "seg")

    def one(k: int) -> None:
        s, o = k % 3, ORIGINS[k % len(ORIGINS)]
        got, want = reader.read_patch(s, o, (8, 9, 7)), plain.read_patch(s, o, (8, 9, 7))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])

    with ThreadPoolExecutor(6) as pool:  # concurrent misses of one volume are not mistaken for evictions
        list(pool.map(one, range(120)))
    assert reader._local()["whole"] is True and len(cache) == 9


def test_whole_volume_keys_carry_the_version(tmp_path) -> None:
    from radiobject.ml.cache.chunks import read_whole

    data = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    vol = _Counting(data, (2, 2, 2))
    cache = InMemoryCache(1 << 20)
    out = np.empty((3, 2, 4), np.float32)
    region = (slice(1, 4), slice(2, 4), slice(0, 4))
    assert read_whole(vol, cache, "k|v1|volume", region, out) == "stored"
    assert vol.reads == 1 and vol.voxels == data.size
    np.testing.assert_array_equal(out, data[region])
    assert read_whole(vol, cache, "k|v1|volume", region, out) == "hit" and vol.reads == 1
    assert read_whole(vol, cache, "k|v2|volume", region, out) == "stored" and vol.reads == 2
    assert read_whole(vol, InMemoryCache(16), "k|v1|volume", region, out) == "dropped"  # larger than the budget
    np.testing.assert_array_equal(out, data[region])


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_a_cache_smaller_than_the_cohort_stays_exact_and_bounded(store, tmp_path, monkeypatch, kind: str) -> None:
    monkeypatch.setattr(chunk_cache, "PROBE_MAX", chunk_cache.PROBE_EVERY)  # probe often: 200 reads see hits
    chunk = 8 * 8 * 8 * 4
    cache = _caches(tmp_path, 10 * chunk)[kind]  # 10 chunks of ~162 in the cohort
    reader = VolumeReader.from_radi(store, "T1w").with_cache(cache)
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = int(rng.integers(3))
        o = [int(rng.integers(-4, n)) for n in SHAPE]
        got, _ = reader.read_patch(s, o, (9, 9, 9), with_label=False)
        want = np.zeros((1, 9, 9, 9), np.float32)
        full = coded_volume(s, SHAPE)
        src = tuple(slice(max(a, 0), min(a + 9, n)) for a, n in zip(o, SHAPE, strict=True))
        dst = tuple(slice(r.start - a, r.stop - a) for r, a in zip(src, o, strict=True))
        want[(0, *dst)] = full[src]
        np.testing.assert_array_equal(got, want)
        assert cache.nbytes <= cache.max_bytes
    if kind == "memory":  # Zarr: chunks in tensorstore's pool (an LRU bounded by the budget), none in Python
        assert reader._pooled() and cache.hits == len(cache) == 0
    else:
        assert cache.hits > 0


def test_4d_volumes_and_rewritten_volumes(tmp_path) -> None:
    data = np.arange(10 * 12 * 8 * 3, dtype=np.int16).reshape(10, 12, 8, 3)
    radi = RadiObject.from_images(
        str(tmp_path / "r"),
        {"dwi": {"s0": ImageData(data, np.eye(4), {}, "x")}},
        options=WriteOptions(chunks=(4, 4, 4)),
    )
    cache = InMemoryCache(1 << 20)
    reader = VolumeReader.from_radi(radi, "dwi").with_cache(cache)
    img, _ = reader.read_patch(0, (3, 5, 2), (5, 6, 4), with_label=False)
    np.testing.assert_array_equal(img, np.moveaxis(data[3:8, 5:11, 2:6], -1, 0).astype(np.float32))
    buf = np.empty((3, 5, 6, 4), np.float32)
    reader.read_patch_into(0, (3, 5, 2), (5, 6, 4), buf)
    np.testing.assert_array_equal(buf, img)
    # a store rewritten in place: the new volume version gives new chunk keys, nothing stale
    radi2 = RadiObject.from_images(
        str(tmp_path / "r2"),
        {"dwi": {"s0": ImageData(data + 1, np.eye(4), {}, "x")}},
        options=WriteOptions(chunks=(4, 4, 4)),
    )
    other = VolumeReader.from_radi(radi2, "dwi").with_cache(cache)
    img2, _ = other.read_patch(0, (3, 5, 2), (5, 6, 4), with_label=False)
    np.testing.assert_array_equal(img2, img + 1)


class _Counting:
    """A volume stand-in that counts backend reads and the voxels they decode."""

    def __init__(self, data: np.ndarray, chunks: tuple[int, ...]) -> None:
        self.data, self.shape, self.chunks = data, data.shape, chunks
        self.reads, self.voxels = 0, 0

    def read(self, region, out=None):
        self.reads += 1
        block = self.data[region]
        self.voxels += block.size
        return block.copy()


def test_misses_are_one_aligned_read_and_hits_read_nothing() -> None:
    data = np.random.default_rng(1).random((32, 32, 32)).astype(np.float32)
    vol = _Counting(data, (8, 8, 8))
    cache = InMemoryCache(1 << 22)
    region = (slice(3, 13), slice(9, 20), slice(0, 5))
    out = np.empty((10, 11, 5), np.float32)
    read_chunked(vol, cache, "p:", region, out)
    np.testing.assert_array_equal(out, data[region])
    assert vol.reads == 1 and vol.voxels == 16 * 16 * 8  # the chunks an unaligned read decodes anyway
    out2 = np.empty_like(out)
    read_chunked(vol, cache, "p:", region, out2)
    assert vol.reads == 1 and np.array_equal(out2, out)  # all hits: no backend read
    wider = (slice(3, 20), slice(9, 20), slice(0, 5))  # two new chunk columns
    out3 = np.empty((17, 11, 5), np.float32)
    read_chunked(vol, cache, "p:", wider, out3)
    np.testing.assert_array_equal(out3, data[wider])
    assert vol.reads == 2 and vol.voxels == 16 * 16 * 8 + 8 * 16 * 8  # only the missing chunks


def test_no_cache_reader_reads_only_through_the_store(store) -> None:
    reader = VolumeReader.from_radi(store, "T1w")
    assert isinstance(reader.cache, NoCache)
    got, _ = reader.read_patch(2, (1, 2, 3), (4, 4, 4), with_label=False)
    np.testing.assert_array_equal(got[0], coded_volume(2, SHAPE)[1:5, 2:6, 3:7])


def test_a_full_cache_with_a_low_hit_rate_is_bypassed_but_probed() -> None:
    from radiobject.ml.cache.chunks import BYPASS_BELOW, PROBE_EVERY, PROBE_MAX, CacheUse

    cache = InMemoryCache(1000)
    policy = CacheUse()
    assert all(policy.use(cache) for _ in range(20))  # not full: always used (it is filling)
    cache.put("x", np.zeros(120, np.float64))  # 960 of 1000 bytes: nearly full
    assert policy.use(cache)  # optimistic until measured
    for _ in range(30):
        policy.record(1, 4)  # 25 % hits
    assert policy.hit_rate < BYPASS_BELOW
    uses = [policy.use(cache) for _ in range(8 * PROBE_MAX)]
    probes = [i + 1 for i, used in enumerate(uses) if used]
    gaps = [b - a for a, b in zip([0, *probes], probes, strict=False)]
    # bypassed, except probes: first after PROBE_EVERY reads, then at doubling gaps up to PROBE_MAX
    want, gap = [], PROBE_EVERY
    while sum(want) + gap <= len(uses):
        want.append(gap)
        gap = min(2 * gap, PROBE_MAX)
    assert gaps == want and gaps[0] == PROBE_EVERY and max(gaps) == PROBE_MAX
    policy.record(1, 4)  # a probe that still misses keeps the long gap
    assert policy.every == PROBE_MAX
    for _ in range(30):
        policy.record(9, 10)
    assert policy.use(cache) and policy.use(cache)  # a high hit rate: used again
    assert policy.every == PROBE_EVERY  # and probes, should it drop again, start from the short gap


def test_the_readers_patch_slices_equal_the_samplers() -> None:
    from radiobject.ml.reader import _patch_slices
    from radiobject.ml.sampling import patch_slices

    rng = np.random.default_rng(3)
    for _ in range(500):
        shape = [int(n) for n in rng.integers(1, 30, 3)]
        patch = [int(p) for p in rng.integers(1, 40, 3)]
        origin = [int(rng.integers(-45, n + 5)) for n in shape]
        src, dst, inside = _patch_slices(origin, patch, shape)
        assert (src, dst) == patch_slices(origin, patch, shape)
        assert inside == all(d.start == 0 and d.stop == p for d, p in zip(dst, patch, strict=True))
    with pytest.raises(ValueError):
        _patch_slices((0, 0, 0), (4, 0, 4), (8, 8, 8))


def test_an_in_memory_cache_on_tiledb_keeps_chunk_entries(tmp_path, monkeypatch) -> None:
    """Only Zarr volumes read through tensorstore use its pool; TileDB keeps the cache's chunk entries."""
    monkeypatch.setattr(chunk_cache, "WHOLE_VOLUMES_UP_TO", 0.0)
    radi = make_store(tmp_path / "t", "tiledb", n=1, shape=SHAPE)
    cache = InMemoryCache(64 << 20)
    reader = VolumeReader.from_radi(radi, "T1w").with_cache(cache)
    for _ in range(2):
        got, _lab = reader.read_patch(0, (2, 3, 1), (8, 9, 7), with_label=False)
        np.testing.assert_array_equal(got[0], coded_volume(0, SHAPE)[2:10, 3:12, 1:8])
    assert not reader._pooled() and cache.hits > 0 and len(cache) > 0


def test_the_pool_grows_to_the_cache_budget(store, monkeypatch) -> None:
    """A budget above the shipped pool grows this process's pool; volumes are reopened to use it."""
    monkeypatch.setattr(chunk_cache, "WHOLE_VOLUMES_UP_TO", 0.0)
    monkeypatch.setitem(zarr_backend._reserved_pool, "bytes", 0)  # restored after the test
    budget = zarr_backend.CHUNK_CACHE_BYTES + (32 << 20)
    reader = VolumeReader.from_radi(store, "T1w").with_cache(InMemoryCache(budget))
    got, _ = reader.read_patch(1, (3, 4, 5), (8, 9, 7), with_label=False)
    np.testing.assert_array_equal(got[0], coded_volume(1, SHAPE)[3:11, 4:13, 5:12])
    assert reader._pooled() and zarr_backend.chunk_pool_bytes() == budget
    assert not zarr_backend.reserve_chunk_pool(budget)  # already that large: nothing reopened
