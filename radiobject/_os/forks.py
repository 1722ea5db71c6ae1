"""Locks a forked child gets new and unheld.

``os.fork`` copies a lock in whatever state it is: held by a thread of the parent (a loader or
prefetch thread mid-read), it stays held forever in the child, whose first ``with lock`` then
waits forever -- the classic DataLoader-after-fork deadlock. :class:`ForkSafeLock` is a
``threading.Lock`` (or ``RLock``) that every forked child replaces with a new one, as the standard
library does for its own locks (``logging``, ``threading``). The data the lock guarded is the
parent's copy; holders reset it after fork where it matters (``os.register_at_fork``).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

__all__ = ["ForkSafeLock", "forked"]

_LIVE: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()
_IMPORTED_BY = os.getpid()


def forked() -> bool:
    """Whether this process was made by ``os.fork`` (without exec) after this module was imported
    (a spawned process imports it afresh): native thread pools its parent started (OpenMP's) are
    then unusable here."""
    return os.getpid() != _IMPORTED_BY


class ForkSafeLock:
    """A ``threading.Lock`` (``reentrant=True``: an ``RLock``), new and unheld in a forked child."""

    __slots__ = ("__weakref__", "_lock", "_reentrant")

    def __init__(self, reentrant: bool = False) -> None:
        self._reentrant = reentrant
        self._lock: Any = threading.RLock() if reentrant else threading.Lock()
        _LIVE.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As ``threading.Lock.acquire``."""
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        """As ``threading.Lock.release``."""
        self._lock.release()

    def __enter__(self) -> bool:
        return bool(self._lock.__enter__())

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)

    def _renew(self) -> None:
        self._lock = threading.RLock() if self._reentrant else threading.Lock()


def _after_fork_in_child() -> None:
    for lock in list(_LIVE):
        lock._renew()


os.register_at_fork(after_in_child=_after_fork_in_child)
