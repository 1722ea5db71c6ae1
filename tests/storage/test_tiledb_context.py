"""The TileDB context is replaced every ``CONTEXT_QUERIES`` queries (TileDB-Py keeps ~13 KB per
query in its context): reads keep returning the right voxels across the switch, from open handles,
idle handles, several threads and a forked child, and the process's memory stays bounded."""

from __future__ import annotations

import gc
import multiprocessing
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

from radiobject.storage import tiledb_backend
from radiobject.storage.base import ArraySpec
from radiobject.storage.tiledb_backend import CONTEXT_QUERIES, TileDBArray, TileDBBackend

SHAPE = (24, 20, 16)
DATA = np.arange(np.prod(SHAPE), dtype=np.int32).reshape(SHAPE)
pytestmark = pytest.mark.timeout(300)


def _region(i: int) -> tuple[slice, ...]:
    x, y, z = i % 17, (3 * i) % 13, (5 * i) % 9
    return (slice(x, x + 7), slice(y, y + 7), slice(z, z + 7))


@pytest.fixture
def array_uri(tmp_path: Path) -> str:
    uri = str(tmp_path / "a")
    handle = TileDBBackend().create_array(uri, ArraySpec(SHAPE, "int32", (8, 8, 8)), {})
    handle.write(tuple(slice(0, s) for s in SHAPE), DATA)
    tiledb_backend._context.cache_clear()  # each test counts from a fresh context
    return uri


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_after_more_reads_than_the_constant_the_context_is_new_and_reads_are_right(array_uri: str) -> None:
    backend = TileDBBackend()
    busy, idle = backend.open_array(array_uri), backend.open_array(array_uri)
    assert isinstance(busy, TileDBArray) and isinstance(idle, TileDBArray)
    first = backend._ctx()
    old = weakref.ref(first)
    for i in range(CONTEXT_QUERIES + 10):
        region = _region(i)
        np.testing.assert_array_equal(busy.read(region), DATA[region])
    assert backend._ctx() is not first
    assert busy._reader is not None and busy._reader.ctx is backend._ctx()
    np.testing.assert_array_equal(idle.read(_region(3)), DATA[_region(3)])  # idle over the switch: reopened
    assert idle._reader is not None and idle._reader.ctx is backend._ctx()
    reopened = backend.open_array(array_uri)  # a handle opened after the switch
    np.testing.assert_array_equal(reopened.read(_region(5)), DATA[_region(5)])
    del first
    gc.collect()
    assert old() is None  # no reader holds the old context any more: TileDB's memory is released


def test_writes_count_and_survive_the_switch(array_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiledb_backend, "CONTEXT_QUERIES", 3)
    backend = TileDBBackend()
    handle = backend.open_array(array_uri)
    expect = DATA.copy()
    seen = set()
    for i in range(12):
        region = _region(i)
        block = np.full([r.stop - r.start for r in region], -i, np.int32)
        handle.write(region, block)
        expect[region] = block
        np.testing.assert_array_equal(handle.read(region), block)
        seen.add(id(backend._ctx()))
    assert len(seen) > 3
    whole = tuple(slice(0, s) for s in SHAPE)
    np.testing.assert_array_equal(backend.open_array(array_uri).read(whole), expect)


def test_threads_read_right_voxels_across_many_switches(array_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiledb_backend, "CONTEXT_QUERIES", 7)
    backend = TileDBBackend()
    shared = backend.open_array(array_uri)  # one handle shared by the threads, one of their own each
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        own = backend.open_array(array_uri)
        try:
            for i in range(seed, seed + 150):
                region = _region(i)
                for handle in (shared, own):
                    got = handle.read(region)
                    if not np.array_equal(got, DATA[region]):
                        raise AssertionError(f"wrong voxels at read {i}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert errors == []
    assert backend._context().generation >= 4 * 300 // 7 - 1


def _child_reads(uri: str, queue: multiprocessing.Queue) -> None:
    backend = TileDBBackend()
    handle = backend.open_array(uri)
    ok = all(np.array_equal(handle.read(_region(i)), DATA[_region(i)]) for i in range(20))
    queue.put((ok, backend._context().generation))


def test_a_forked_child_gets_a_fresh_context(array_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiledb_backend, "CONTEXT_QUERIES", 5)
    backend = TileDBBackend()
    handle = backend.open_array(array_uri)
    for i in range(23):
        handle.read(_region(i))
    assert backend._context().generation == 4
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_reads, args=(array_uri, queue))
    proc.start()
    try:
        ok, generation = queue.get(timeout=120)
    finally:
        proc.join(timeout=60)
    assert ok and generation == 20 // 5 - 1  # its own context, counted from zero (open + 20 reads: 3 switches)
    np.testing.assert_array_equal(handle.read(_region(1)), DATA[_region(1)])  # the parent's handle still reads


def test_memory_stays_bounded_over_many_reads(array_uri: str) -> None:
    backend = TileDBBackend()
    handle = backend.open_array(array_uri)
    region = _region(4)
    for _ in range(CONTEXT_QUERIES):  # warm up: allocator arenas, one full context
        handle.read(region)
    gc.collect()
    start = _rss()
    for _ in range(5 * CONTEXT_QUERIES):
        handle.read(region)
    gc.collect()
    growth = _rss() - start
    # one context kept ~13 KiB per read: ~64 MiB over these 5,000 reads (module doc)
    assert growth < 24 << 20, f"RSS grew {growth / 2**20:.1f} MiB over {5 * CONTEXT_QUERIES} reads"


_CTRL_C = """
import ctypes, os, signal, sys, time
import numpy as np

class Sigaction(ctypes.Structure):  # struct sigaction (x86-64 / aarch64 glibc): the handler first
    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16), ("flags", ctypes.c_int),
                ("restorer", ctypes.c_void_p)]

def c_handler():
    sa = Sigaction()
    assert ctypes.CDLL(None).sigaction(signal.SIGINT, None, ctypes.byref(sa)) == 0
    return sa.handler

python_handler = c_handler()
from radiobject import Volume, WriteOptions
opts = WriteOptions(backend="tiledb")
Volume.from_numpy(sys.argv[1], np.arange(512, dtype=np.int16).reshape(8, 8, 8), options=opts)
assert (Volume(sys.argv[1]).to_numpy() == np.arange(512).reshape(8, 8, 8)).all()
print("handler kept" if c_handler() == python_handler else "handler replaced")
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""


def test_ctrl_c_still_interrupts_a_process_that_used_tiledb(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _CTRL_C, str(tmp_path / "v")], capture_output=True, text=True, timeout=120
    )
    # TileDB's first context would put its own SIGINT handler in place of Python's, process-wide
    got = out.stdout.split()
    assert out.returncode == 0 and got == ["handler", "kept", "KeyboardInterrupt"], out.stdout + out.stderr
