"""Caches in one process: LRU byte budgets, keys, damage, planted entries (several processes:
test_cache_processes.py)."""

from __future__ import annotations

import mmap
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from radiobject.errors import UnsafePathError
from radiobject.ml.cache import (
    CacheStrategy,
    DiskCache,
    InMemoryCache,
    NoCache,
    SharedMemoryCache,
    cache_key,
    make_cache,
)

MB = 1 << 20


def _arr(i: int, nbytes: int = 40_000) -> np.ndarray:
    """A deterministic array per key index, so any process can check what it read."""
    return np.random.default_rng(i).random(nbytes // 8)


def test_cache_key_format_and_escaping():
    assert cache_key("s3://b/store", "T1w", "sub-01") == "s3://b/store|T1w|sub-01|full"
    assert cache_key("/x", "c", "o", (slice(0, 64), slice(5, 69), slice(None, 3))) == "/x|c|o|0:64,5:69,:3"
    assert cache_key("a|b", "c", "d") != cache_key("a", "b|c", "d")


def test_no_cache_always_loads():
    cache, calls = NoCache(), []
    for _ in range(3):
        cache.get_or_load("k", lambda: calls.append(1) or np.ones(3))
    assert len(calls) == 3 and cache.get("k") is None


def test_in_memory_lru_bounded_in_bytes():
    cache = InMemoryCache(max_bytes=100_000)
    for i in range(3):
        cache.put(f"k{i}", _arr(i))  # 40 kB each: the third evicts the oldest
    assert "k0" not in cache and "k1" in cache and "k2" in cache and cache.nbytes == 80_000
    cache.get("k1")  # k1 becomes most recent -> k2 is evicted next
    cache.put("k3", _arr(3))
    assert "k2" not in cache and "k1" in cache and "k3" in cache
    cache.put("huge", np.zeros(200_000, dtype=np.uint8))  # over budget: not stored, nothing evicted
    assert "huge" not in cache and len(cache) == 2
    got = cache.get("k3")
    np.testing.assert_array_equal(got, _arr(3))
    with pytest.raises(ValueError):
        got[0] = 1  # read-only
    clone = pickle.loads(pickle.dumps(cache))  # a spawned worker starts empty: no copy shipped
    assert len(clone) == 0 and clone.max_bytes == 100_000


def test_in_memory_cache_is_thread_safe():
    cache = InMemoryCache(max_bytes=400_000)

    def hammer(t: int) -> None:
        for i in range(300):
            key = f"k{(i * 7 + t) % 25}"
            got = cache.get_or_load(key, lambda key=key: _arr(int(key[1:]), 8_000))
            assert got[0] == _arr(int(key[1:]), 8_000)[0]

    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert cache.nbytes == sum(v.nbytes for v in cache._items.values()) <= 400_000


@pytest.mark.parametrize("kind", ["disk", "shm"])
def test_disk_like_cache_roundtrip_lru_and_damage(kind, tmp_path):
    cache = DiskCache(tmp_path / "c", max_bytes=130_000) if kind == "disk" else SharedMemoryCache(130_000)
    try:
        for i in range(3):
            cache.put(f"k{i}", _arr(i))
        got = cache.get("k0")  # k0 is now the most recently used
        base = got
        while isinstance(base, np.ndarray):
            base = base.base
        base = base.obj if isinstance(base, memoryview) else base
        assert isinstance(base, mmap.mmap) and not got.flags.writeable  # a map, not a copy
        np.testing.assert_array_equal(got, _arr(0))
        cache.put("k3", _arr(3))  # 4 x ~40 kB > 130 kB: evicted to 80 %, least recently used first
        assert "k1" not in cache and "k2" not in cache and "k0" in cache and "k3" in cache
        assert cache.nbytes <= 0.8 * 130_000 and len(cache) == 2
        # private checked files (header + raw bytes, no pickle)
        files = list(cache.path.rglob("*.rce"))
        assert len(files) == 2 and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
        assert files[0].read_bytes()[:8] == b"RADICH01"
        files[0].write_bytes(b"RADICH01 garbage")  # damaged (e.g. power loss): a miss, and removed
        fresh = DiskCache(cache.path, cache.max_bytes)  # a new process has no open maps
        assert sum(k in fresh for k in ("k0", "k3")) == 1 and len(list(cache.path.rglob("*.rce"))) == 1
        with pytest.raises(TypeError):
            cache.put("obj", np.array([object()]))
        assert pickle.loads(pickle.dumps(cache)).path == cache.path
    finally:
        if kind == "shm":
            cache.close()


def test_disk_cache_reuses_its_maps_and_drops_stale_ones(tmp_path):
    a = DiskCache(tmp_path, max_bytes=100_000)
    b = DiskCache(tmp_path, max_bytes=100_000)  # stands for another process on the same directory
    a.put("k0", _arr(0))
    first = a.get("k0")
    assert a.get("k0") is first  # a hit reuses the open map: no re-mmap, no new page faults
    b.put("k0", _arr(9))  # replaced by another process (new file): a sees the new value
    np.testing.assert_array_equal(a.get("k0"), _arr(9))
    np.testing.assert_array_equal(first, _arr(0))  # an array already handed out stays valid
    a.SWEEP_SECONDS = 0.0
    b.put("k1", _arr(1))
    b.put("k2", _arr(2))  # b evicts k0 (least recently used) behind a's back
    assert "k0" not in b
    a.get("k2")  # any access sweeps: a no longer pins the evicted file
    assert "k0" not in a._maps and "k2" in a._maps


def test_factory_and_enum(tmp_path):
    assert isinstance(make_cache(CacheStrategy.NONE), NoCache)
    assert isinstance(make_cache("in_memory", max_bytes=10), InMemoryCache)
    disk = make_cache(CacheStrategy.DISK, max_bytes=10, path=tmp_path)
    assert isinstance(disk, DiskCache) and disk.path == tmp_path
    shm = make_cache(CacheStrategy.SHARED_MEMORY, max_bytes=MB)
    try:
        assert isinstance(shm, SharedMemoryCache) and str(shm.path).startswith("/dev/shm/")
    finally:
        shm.close()
    with pytest.raises(ValueError, match="path"):
        make_cache("disk")
    with pytest.raises(ValueError):
        make_cache("bogus")
    with pytest.raises(ValueError, match="free"):
        SharedMemoryCache(1 << 60)
    assert not shm.path.exists()  # close() removed the shared directory
    shm.put("late", np.ones(3))  # a worker still running after close: nothing stored, no error
    assert shm.get("late") is None and not shm.path.exists()
    np.testing.assert_array_equal(shm.get_or_load("late", lambda: np.ones(3)), np.ones(3))
    assert not shm.path.exists()


def test_shared_memory_dir_is_removed_when_its_creator_exits():
    code = (
        "import numpy as np; from radiobject.ml.cache import SharedMemoryCache; c = SharedMemoryCache(10**6); "
        "c.put('k', np.ones(10)); print(c.path)"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    assert str(path).startswith("/dev/shm/radiobject-cache-") and not path.exists()


def test_cache_key_carries_the_volume_version() -> None:
    from radiobject.ml.cache import cache_key

    assert cache_key("s3://b", "T1w", "x") == cache_key("s3://b", "T1w", "x", version="")
    assert cache_key("s3://b", "T1w", "x", version="v1") != cache_key("s3://b", "T1w", "x", version="v2")


# ---- trust: shared-memory segments cannot be planted (issue 10.8) --------------------------------


def test_shared_memory_names_are_unguessable_and_private() -> None:
    a, b = SharedMemoryCache(MB), SharedMemoryCache(MB)
    try:
        assert a.path != b.path
        token = a.name.rsplit("-", 1)[-1]
        assert len(token) == 32 and int(token, 16) >= 0  # 128 random bits, no PID or counter
        assert os.stat(a.path).st_mode & 0o777 == 0o700
        a.put("k", _arr(1))
        (entry,) = a.path.rglob("*.rce")
        assert entry.stat().st_mode & 0o777 == 0o600 and entry.parent.stat().st_mode & 0o077 == 0
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("how", ["world_writable", "other_owner", "symlink", "file"])
def test_a_pre_created_named_segment_is_refused(tmp_path, how: str) -> None:
    target = tmp_path / "radiobject-cache-job"
    if how == "world_writable":
        target.mkdir()
        os.chmod(target, 0o777)
    elif how == "other_owner":
        target.mkdir(mode=0o700)
        os.chown(target, 65534, 65534)  # tests run as root; nobody:nogroup stands for another user
    elif how == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.write_bytes(b"")
    if how == "other_owner" and os.getuid() != 0:
        pytest.skip("needs root to create a directory owned by another user")
    with pytest.raises(UnsafePathError, match="radiobject-cache-job"):
        SharedMemoryCache(MB, "radiobject-cache-job", root=tmp_path)


def test_a_private_named_segment_is_shared_by_name(tmp_path) -> None:
    a = SharedMemoryCache(MB, "job-1", root=tmp_path)
    a.put("k", _arr(3))
    b = SharedMemoryCache(MB, "job-1", root=tmp_path)  # another process of this user, same name
    np.testing.assert_array_equal(b.get("k"), _arr(3))


def _plant(cache: DiskCache, key: str, forged_for: str, value: np.ndarray) -> Path:
    """Write a well-formed entry for ``forged_for`` at the file name of ``key``."""
    from radiobject.ml.cache import _files

    other = cache.path / "forge"
    other.mkdir(mode=0o700, exist_ok=True)
    src = _files.entry_file(other, forged_for)
    _files.publish(src, forged_for, value)
    dst = _files.entry_file(cache.path, key)
    dst.parent.mkdir(mode=0o700, exist_ok=True)
    os.replace(src, dst)
    return dst


@pytest.mark.parametrize("attack", ["other_key", "bad_payload", "group_writable", "other_owner", "garbage"])
def test_planted_or_damaged_entries_are_never_served(tmp_path, attack: str) -> None:
    cache = SharedMemoryCache(MB, "job", root=tmp_path)
    key = cache_key("/store", "T1w", "sub-01", version="v1")
    if attack == "other_key":  # valid file, written for another volume version
        file = _plant(cache, key, cache_key("/store", "T1w", "sub-01", version="v0"), _arr(9))
    else:
        cache.put(key, _arr(1))
        (file,) = [f for f in cache.path.rglob("*.rce")]
        if attack == "bad_payload":
            raw = bytearray(file.read_bytes())
            raw[-3] ^= 0xFF  # one flipped byte in the voxels
            file.write_bytes(bytes(raw))
        elif attack == "group_writable":
            os.chmod(file, 0o666)
        elif attack == "other_owner":
            if os.getuid() != 0:
                pytest.skip("needs root")
            os.chown(file, 65534, 65534)
        else:
            file.write_bytes(b"\0" * 200)
    fresh = SharedMemoryCache(MB, "job", root=tmp_path)  # a worker with no open maps
    assert fresh.get(key) is None  # a miss: the loader reads the store instead
    assert not file.exists()  # and the entry is removed
    got = fresh.get_or_load(key, lambda: _arr(1))
    np.testing.assert_array_equal(got, _arr(1))


def test_disk_cache_put_does_not_list_the_directory(tmp_path, monkeypatch) -> None:
    from radiobject.ml.cache import _files

    scans = 0
    real = _files.entries

    def counting(directory):
        nonlocal scans
        scans += 1
        return real(directory)

    monkeypatch.setattr(_files, "entries", counting)
    cache = DiskCache(tmp_path / "c", max_bytes=100 * 4_200)  # ~100 entries of 4 kB
    small = [np.full(512, i, np.float64) for i in range(1000)]
    for i, v in enumerate(small):
        cache.put(f"k{i}", v)
    # 1000 puts into a ~100-entry budget: a listing only when the running total passes the budget,
    # then eviction to 80 %, so about one listing per ~20 puts (O(1) amortised), not one per put
    assert 0 < scans <= 1000 / 15, scans
    assert cache.nbytes <= cache.max_bytes
    assert _files.total_bytes(cache.path) == cache.nbytes  # the running total is exact


@pytest.mark.parametrize("kind", ["memory", "disk", "none"])
def test_holds_is_not_a_use(kind, tmp_path):
    cache = {"memory": InMemoryCache(MB), "disk": DiskCache(tmp_path / "d", MB), "none": NoCache()}[kind]
    cache.put("a", np.ones(4))
    cache.put("b", np.ones(4))
    before = (getattr(cache, "hits", 0), getattr(cache, "misses", 0))
    assert cache.holds("a") == (kind != "none") and not cache.holds("zz")
    assert (getattr(cache, "hits", 0), getattr(cache, "misses", 0)) == before  # counted as no lookup
    if kind == "memory":  # and the LRU order is untouched: "a" is still the first evicted
        cache.put("c", np.ones(MB // 8 - 4))
        assert not cache.holds("a") and cache.holds("b") and cache.holds("c")
