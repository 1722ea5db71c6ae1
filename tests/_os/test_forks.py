"""Locks held by a parent's thread at ``fork`` are new and unheld in the child (no deadlock), for
:class:`ForkSafeLock` itself and for the locks of the read and loader paths."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from radiobject._os.forks import ForkSafeLock
from tests.forking import in_forked_child


def _child_acquires_all(locks: list[Any]) -> bool:
    """Forks while a parent thread holds every lock; True when the child takes each at once."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        release.wait(30)
        for lock in reversed(locks):
            lock.release()

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    try:
        return in_forked_child(lambda: all(lock.acquire(timeout=2) for lock in locks)) is True
    finally:
        release.set()
        t.join()


@pytest.mark.parametrize("reentrant", [False, True])
def test_a_held_lock_is_free_in_the_forked_child(reentrant: bool) -> None:
    lock = ForkSafeLock(reentrant=reentrant)
    assert _child_acquires_all([lock])
    got: list[bool] = []
    with lock:  # and still a lock in the parent: another thread cannot take it meanwhile
        other = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.1)))
        other.start()
        other.join()
    assert got == [False]
    assert lock.acquire(blocking=False)
    lock.release()


def test_a_plain_lock_would_deadlock() -> None:  # what the class is for (the check can fail)
    assert not _child_acquires_all([threading.Lock()])


def test_the_read_and_loader_paths_locks_are_fork_safe() -> None:
    from radiobject.ml import _reader_prefetch, foreground
    from radiobject.ml._reader_open import OpenVolumes
    from radiobject.ml.cache.memory import InMemoryCache
    from radiobject.model import catalog
    from radiobject.storage import _zarr_plain

    locks = [
        catalog._STATE_LOCK,
        foreground._LOCK,
        _reader_prefetch._CREATE,
        _zarr_plain._POOLS_LOCK,
        _zarr_plain._CHUNKS._lock,
        InMemoryCache(1 << 20)._lock,
        OpenVolumes()._lock,
    ]
    assert all(isinstance(lock, ForkSafeLock) for lock in locks)
    assert _child_acquires_all(locks)
