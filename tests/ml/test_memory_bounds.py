"""Memory bounds of the training reads that do not depend on the cohort's size: open volumes per
process, catalogs in workers, whole-volume caching against the memory left, cache maps and views.

The limits are simulated here (``memory_headroom`` patched); ``test_memory_bounds_slow`` runs the
same paths in subprocesses under a real address-space limit.
"""

from __future__ import annotations

import errno
import gc
import os
import pickle
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from radiobject import RadiObject
from radiobject.errors import OutputTooLargeError
from radiobject.ml import _reader_cache, _reader_open, create_training_dataloader
from radiobject.ml.cache import DiskCache, InMemoryCache, SharedMemoryCache, _files, limits
from radiobject.ml.cache.limits import CacheMemoryWarning
from radiobject.ml.errors import SampleError
from radiobject.ml.reader import VolumeReader
from radiobject.storage import zarr_backend
from radiobject.storage.base import ArrayHandle
from tests.ml._stores import coded_volume, make_store

SHAPE = (20, 24, 16)


@pytest.fixture(scope="module", params=["zarr", "tiledb"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RadiObject:
    return make_store(tmp_path_factory.mktemp(request.param) / "s", backend=request.param, n=12, shape=SHAPE)


def _open_handles() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, ArrayHandle))


# ------------------------------------------------------------------ open volumes per process
def test_a_reader_keeps_at_most_max_open_volumes_open(store: RadiObject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_reader_open, "MAX_OPEN_VOLUMES", 4)
    reader = VolumeReader.from_radi(store, ["T1w", "FLAIR"], "seg")
    before = _open_handles()
    for i in range(len(reader)):  # 12 subjects x 3 collections = 36 volumes read
        image, label = reader.read_patch(i, (2, 3, 1), (8, 8, 8))
        np.testing.assert_array_equal(image[0], coded_volume(i, SHAPE)[2:10, 3:11, 1:9])
    assert len(reader._local()["volumes"]) == 4
    assert _open_handles() - before <= 4  # the closed ones hold no backend handle any more
    image, _ = reader.read_patch(0, (0, 0, 0), (4, 4, 4))  # closed, reopened: the same data
    np.testing.assert_array_equal(image[1], coded_volume(0, SHAPE, 0.5)[:4, :4, :4])


def test_a_worker_opens_its_pinned_versions_without_loading_the_catalogs(store: RadiObject) -> None:
    reader = VolumeReader.from_radi(store, ["T1w"], "seg")
    worker = pickle.loads(pickle.dumps(reader))  # as in a spawn / forkserver worker
    image, label = worker.read_patch(3, (0, 0, 0), (6, 6, 6))
    np.testing.assert_array_equal(image[0], coded_volume(3, SHAPE)[:6, :6, :6])
    assert label is not None
    for name in ("T1w", "seg"):  # only the collections' markers were read, no obs table
        assert worker.radi[name]._state._obs is None


def test_a_pinned_version_replaced_since_is_still_read_without_the_catalog(tmp_path: Path) -> None:
    radi = make_store(tmp_path / "s", n=2, shape=SHAPE)
    reader = VolumeReader.from_radi(radi, ["T1w"])
    from radiobject.formats.image import ImageData

    fresh = RadiObject(radi.uri)
    old = fresh.T1w.volume("sub-01")
    fresh.T1w.replace("sub-01", ImageData(np.full(SHAPE, -7.0, np.float32), old.affine, {}, "new"))
    worker = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(worker.read_image(1)[0], coded_volume(1, SHAPE))  # the version it was built on
    assert worker.radi["T1w"]._state._obs is None


# ------------------------------------------------------------------ whole volumes vs the memory left
def test_whole_volume_caching_falls_back_to_chunks_when_the_cohort_does_not_fit_memory(
    store: RadiObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    cohort = 12 * int(np.prod(SHAPE)) * 4
    monkeypatch.setattr(limits, "memory_headroom", lambda: cohort)  # fits the cache, not 2x in memory
    reader = VolumeReader.from_radi(store, ["T1w"], cache=InMemoryCache(64 << 20))
    with pytest.warns(CacheMemoryWarning, match="caching chunks instead of whole volumes"):
        image, _ = reader.read_patch(5, (4, 4, 4), (8, 8, 8), with_label=False)
    np.testing.assert_array_equal(image[0], coded_volume(5, SHAPE)[4:12, 4:12, 4:12])
    assert reader._local()["whole"] is False


def test_whole_volume_caching_is_kept_when_memory_allows(store: RadiObject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "memory_headroom", lambda: 1 << 40)
    reader = VolumeReader.from_radi(store, ["T1w"], cache=InMemoryCache(64 << 20))
    reader.read_patch(5, (4, 4, 4), (8, 8, 8), with_label=False)
    assert reader._local()["whole"] is True


def test_a_disk_cache_reads_chunks_when_one_volume_does_not_fit_memory(
    store: RadiObject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = int(np.prod(SHAPE)) * 4
    monkeypatch.setattr(limits, "memory_headroom", lambda: 2 * volume)  # one volume: under 4x
    reader = VolumeReader.from_radi(store, ["T1w"], cache=DiskCache(tmp_path / "c", 64 << 20))
    with pytest.warns(CacheMemoryWarning, match="a volume"):
        image, _ = reader.read_patch(2, (1, 2, 3), (8, 8, 8), with_label=False)
    np.testing.assert_array_equal(image[0], coded_volume(2, SHAPE)[1:9, 2:10, 3:11])
    assert reader._local()["whole"] is False


def test_a_whole_volume_read_larger_than_the_memory_left_is_refused_typed(
    store: RadiObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "memory_headroom", lambda: 1000)
    monkeypatch.setattr(_reader_cache, "LARGE_READ_BYTES", 1)
    reader = VolumeReader.from_radi(store, ["T1w"])
    with pytest.raises(OutputTooLargeError, match="sub-04.*patch_size") as info:
        reader.read_image(4)
    assert isinstance(info.value, MemoryError)
    loader = create_training_dataloader(store, modalities="T1w", patch_size=None, batch_size=1)
    with pytest.raises(SampleError, match="OutputTooLargeError.*needs more than") as failed:  # named, never an OOM
        next(iter(loader))
    assert failed.value.subject.startswith("sub-")


def test_the_chunk_pool_of_an_in_memory_cache_is_cut_to_half_the_memory_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "s", n=4, shape=SHAPE)  # Zarr: the pool is tensorstore's
    monkeypatch.setitem(zarr_backend._reserved_pool, "bytes", 0)
    monkeypatch.setattr(zarr_backend, "CHUNK_CACHE_BYTES", 1024)  # the default pool: smaller than the cache
    monkeypatch.setattr(limits, "memory_headroom", lambda: 120 << 10)
    reader = VolumeReader.from_radi(store, ["T1w"], cache=InMemoryCache(100 << 10))  # under the cohort
    try:
        with pytest.warns(CacheMemoryWarning, match="chunk pool is cut"):
            assert reader._pooled()
        assert zarr_backend.chunk_pool_bytes() == 60 << 10
    finally:
        zarr_backend._context.cache_clear()  # later arrays open with the default pool


# ------------------------------------------------------------------ caches: bytes held
def test_an_in_memory_cache_does_not_keep_the_base_of_a_view_alive() -> None:
    cache = InMemoryCache(1 << 20)
    base = np.zeros(4 << 20, np.uint8)  # 4 MiB, over the budget
    alive = weakref.ref(base)
    cache.put("k", base[:1024])
    del base
    gc.collect()
    assert alive() is None and cache.nbytes == 1024
    np.testing.assert_array_equal(cache.get("k"), np.zeros(1024, np.uint8))


@pytest.mark.parametrize("kind", ["disk", "shared"])
def test_a_directory_cache_keeps_its_maps_within_their_byte_budget(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = np.arange(16 << 10, dtype=np.float32)  # 64 KiB
    if kind == "disk":
        cache: DiskCache = DiskCache(tmp_path / "c", 64 << 20, max_map_bytes=300 << 10)
    else:
        cache = SharedMemoryCache(64 << 20, root=tmp_path, max_map_bytes=300 << 10)
    for i in range(40):
        cache.put(f"k{i}", entry + i)
    for i in range(40):
        np.testing.assert_array_equal(cache.get(f"k{i}"), entry + i)
    assert 0 < cache._mapped <= 300 << 10 and len(cache._maps) <= 4
    clone = pickle.loads(pickle.dumps(cache))  # workers keep the same bound
    assert clone.max_map_bytes == 300 << 10


def test_the_default_map_budget_is_a_quarter_of_the_memory_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "memory_headroom", lambda: 4 * (200 << 10))
    cache = DiskCache(tmp_path / "c", 64 << 20)
    for i in range(20):
        cache.put(f"k{i}", np.full(16 << 10, i, np.float32))
        cache.get(f"k{i}")
    assert cache._mapped <= 200 << 10


def test_a_map_the_kernel_refuses_is_retried_then_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = DiskCache(tmp_path / "c", 64 << 20)
    cache.put("a", np.arange(10.0))
    real, calls = _files.load, []

    def refuse_once(file: Path, key: str, **kw: bool) -> object:
        calls.append(key)
        if len(calls) == 1:
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        return real(file, key, **kw)

    monkeypatch.setattr(_files, "load", refuse_once)
    np.testing.assert_array_equal(cache.get("a"), np.arange(10.0))  # maps dropped, mapped again
    cache._drop_maps()

    def refuse(file: Path, key: str, **kw: bool) -> object:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(_files, "load", refuse)
    assert cache.get("a") is None  # a miss (the store is read), never a crash of the loader


def test_disk_cache_put_lists_the_directory_only_to_evict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listings: list[int] = []
    real = _files.entries

    def counted(directory: Path) -> object:
        listings.append(1)
        return real(directory)

    monkeypatch.setattr(_files, "entries", counted)
    value = np.ones(1024, np.float32)
    roomy = DiskCache(tmp_path / "roomy", 64 << 20)
    for i in range(2000):
        roomy.put(f"k{i}", value)
    assert not listings  # O(1) puts under the budget
    tight = DiskCache(tmp_path / "tight", 100 * 4200)  # ~100 entries
    for i in range(2000):
        tight.put(f"k{i}", value)
    assert len(listings) <= 2000 // 15  # one listing per ~20 puts (evicted to 80 %)
    monkeypatch.setattr(_files, "entries", real)
    assert tight.nbytes <= tight.max_bytes and _files.total_bytes(tight.path) == tight.nbytes


def test_a_writer_killed_mid_write_does_not_hold_bytes_beyond_the_budget(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", 1 << 20)
    cache.put("a", np.zeros(1000))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, old = int(gone.stdout), time.time() - 2 * _files.STALE_TEMP_SECONDS
    entry = _files.entry_file(cache.path, "b")
    entry.parent.mkdir(exist_ok=True)

    def temp(pid: int, token: str, age: float) -> Path:  # as _files.publish names them
        path = entry.with_name(f".{entry.name}.{pid}.1.{token * 16}.tmp")
        path.write_bytes(b"\0" * (3 << 20))  # 3 MiB: over the whole budget
        os.utime(path, (age, age))
        return path

    killed = temp(dead, "0", old)  # its writer is gone and it is old: left by a kill
    mine = temp(os.getpid(), "1", old)  # a live writer
    recent = temp(dead, "2", time.time())  # maybe a writer in another pid namespace, still writing
    DiskCache(cache.path, 1 << 20)  # the next run's cache on the same directory
    assert not killed.exists() and mine.exists() and recent.exists()
    again = temp(dead, "3", old)
    for i in range(40):  # over the budget: the eviction sweeps too
        cache.put(f"k{i}", np.zeros(8192))
    assert not again.exists() and cache.nbytes <= cache.max_bytes


@pytest.mark.parametrize("backend", ["zarr", "tiledb"])
@pytest.mark.parametrize("change", ["delete", "replace"])
def test_a_reader_reads_its_snapshot_until_gc(tmp_path: Path, backend: str, change: str) -> None:
    """A subject deleted or replaced while a loader runs is read in the version the reader was built
    on (whole, in a fresh worker too); once garbage collection removes that version, a typed error
    (deleted: ``NotFoundError``; replaced: ``CorruptDataError``), never zeros or the new data."""
    from radiobject.errors import CorruptDataError, NotFoundError
    from radiobject.formats.image import ImageData

    radi = make_store(tmp_path / "s", backend=backend, n=3, shape=SHAPE)
    reader = VolumeReader.from_radi(radi, ["T1w"], "seg")
    k = reader.subject_ids.index("sub-01")
    want = coded_volume(1, SHAPE)
    again = RadiObject(str(tmp_path / "s"))
    if change == "delete":
        again.delete_subject("sub-01")
    else:
        affine = np.asarray(again["T1w"].volume("sub-01").affine)
        new = ImageData(coded_volume(7, SHAPE), affine, {}, "synthetic/new")
        lab = ImageData(np.zeros(SHAPE, np.uint8), affine, {}, "synthetic/new-seg")
        again.replace_subject("sub-01", {"T1w": new, "seg": lab})
    worker = pickle.loads(pickle.dumps(reader))  # a fresh process's view: nothing opened yet
    np.testing.assert_array_equal(worker.read_raw(k, "T1w"), want)
    for name in ("T1w", "seg"):
        RadiObject(str(tmp_path / "s"))[name].collect_garbage(grace_seconds=0)
    late = pickle.loads(pickle.dumps(reader))
    with pytest.raises(NotFoundError if change == "delete" else CorruptDataError, match="sub-01"):
        late.read_raw(k, "T1w")
