"""Caches shared by several processes: atomic concurrent fills, one load per missed key, and one
copy per node for shared-memory caches (USS / PSS)."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import psutil
import pytest

from radiobject.ml.cache import DiskCache, SharedMemoryCache

MB = 1 << 20


def _arr(i: int, nbytes: int = 40_000) -> np.ndarray:
    """A deterministic array per key index, so any process can check what it read."""
    return np.random.default_rng(i).random(nbytes // 8)


# ---- several processes --------------------------------------------------------------------------


def _fill(cache, seed: int, n_keys: int, rounds: int, out: mp.Queue) -> None:
    """Worker: get_or_load random keys; every value read must be whole and correct, never an error."""
    rng = np.random.default_rng(seed)
    bad = 0
    for _ in range(rounds):
        i = int(rng.integers(n_keys))
        try:
            got = cache.get_or_load(f"key-{i}", lambda i=i: _arr(i))
            bad += not np.array_equal(got, _arr(i))
        except Exception:  # noqa: BLE001 - a torn read must count as a failure, not hang the test
            bad += 1
    out.put((seed, bad, cache.hits))


@pytest.mark.parametrize("kind,start", [("disk", "fork"), ("shm", "spawn")])
def test_two_processes_fill_the_same_cache_concurrently(kind, start, tmp_path):
    # budget for ~10 of the 30 keys, so both processes also evict concurrently
    cache = DiskCache(tmp_path / "c", 10 * 40_200) if kind == "disk" else SharedMemoryCache(10 * 40_200)
    try:
        ctx = mp.get_context(start)
        out = ctx.Queue()
        procs = [ctx.Process(target=_fill, args=(cache, s, 30, 400, out)) for s in (1, 2)]
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        assert all(bad == 0 for _, bad, _ in results), results
        assert all(hits > 0 for _, _, hits in results), results  # they did reuse entries
        assert not list(cache.path.rglob("*.tmp"))  # every write was published or cleaned up
        assert 0 < cache.nbytes <= cache.max_bytes
        left = [i for i in range(30) if cache.get(f"key-{i}") is not None]  # each header + CRC checked
        assert len(left) == len(list(cache.path.rglob("*.rce"))) > 0  # every file left is whole and valid
        assert all(np.array_equal(cache.get(f"key-{i}"), _arr(i)) for i in left)
        assert cache.path.is_dir()  # exiting workers (pickled copies) did not remove the shared dir
    finally:
        if kind == "shm":
            cache.close()


def _slow_load(cache, log: str, out: mp.Queue) -> None:
    """Worker: a slow loader that records every call in ``log``."""

    def load() -> np.ndarray:
        with open(log, "a") as fh:
            fh.write("load\n")
        time.sleep(0.5)
        return _arr(7)

    got = cache.get_or_load("same-volume", load)
    out.put(bool(np.array_equal(got, _arr(7))))


def test_processes_missing_the_same_key_load_it_once(tmp_path):
    cache = DiskCache(tmp_path / "c", 10 * MB)
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_slow_load, args=(cache, str(tmp_path / "log"), out)) for _ in range(3)]
    for p in procs:
        p.start()
    assert all(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert (tmp_path / "log").read_text().count("load") == 1  # one store read, not one per worker


def _touch_all(cache_or_path, private: bool, ready: mp.Barrier, out: mp.Queue) -> None:
    """Worker: read the cached volume fully; report how much memory became private (USS)."""
    proc = psutil.Process()
    before = proc.memory_full_info()
    if private:
        arr = np.load(cache_or_path, allow_pickle=False)  # what a per-worker cache would hold
    else:
        arr = cache_or_path.get("volume")
    total = float(arr.sum(dtype=np.float64))  # touches every page
    ready.wait(timeout=60)  # all readers hold their mapping when memory is measured
    after = proc.memory_full_info()
    out.put({"uss": after.uss - before.uss, "pss": after.pss - before.pss, "rss": after.rss - before.rss, "sum": total})
    ready.wait(timeout=60)


def _readers(target_arg, private: bool, n: int) -> list[dict]:
    ctx = mp.get_context("fork")  # deltas are measured inside each reader, so fork is fair and fast
    out, ready = ctx.Queue(), ctx.Barrier(n)
    procs = [ctx.Process(target=_touch_all, args=(target_arg, private, ready, out)) for _ in range(n)]
    for p in procs:
        p.start()
    res = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return res


def test_shared_memory_cache_is_one_copy_per_node_not_one_per_worker(tmp_path):
    """3 readers of a 64 MB cached volume: shared = ~0 private bytes each; private copy = 64 MB each."""
    n, size = 3, 64 * MB
    volume = np.random.default_rng(0).random(size // 8).astype(np.float64)
    cache = SharedMemoryCache(2 * size)
    try:
        cache.put("volume", volume)
        shared = _readers(cache, private=False, n=n)
        np.save(tmp_path / "v.npy", volume)
        private = _readers(tmp_path / "v.npy", private=True, n=n)
    finally:
        cache.close()
    expect = float(volume.sum(dtype=np.float64))
    assert all(r["sum"] == pytest.approx(expect) for r in shared + private)
    for r in shared:  # each reader maps the same tmpfs pages: RSS grows, private memory does not
        assert r["rss"] > 0.9 * size and r["uss"] < 0.1 * size, r
        assert r["pss"] < 0.6 * size, r  # its proportional share: ~size / n
    for r in private:  # the control really does make one private copy per process
        assert r["uss"] > 0.9 * size, r
    print(
        f"\nper reader, {n} readers of {size / MB:.0f} MB: shared USS "
        f"{[round(r['uss'] / MB, 1) for r in shared]} MB, PSS {[round(r['pss'] / MB, 1) for r in shared]} MB; "
        f"private-copy USS {[round(r['uss'] / MB, 1) for r in private]} MB"
    )
