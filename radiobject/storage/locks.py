"""The write lock of a store: publishing steps of different writers never interleave.

On a local (or NFS) disk the lock is ``fcntl.flock`` on a hidden file ``.radiobject.lock`` at the
root of the collection or store. Waiting is bounded: after ``timeout`` seconds
``StoreLockedError`` names the store and the holder (pid and host written into the lock file).
The lock is re-entrant within a process (a thread that holds it may take it again); a forked
child does not inherit it.

On object stores (``s3://``) the lock is an object ``.radiobject.lock`` created with a conditional
PUT (``If-None-Match: *``), held under a lease that a heartbeat renews, taken over when stale, and
deleted on release only while it is still ours: see :mod:`radiobject.storage._s3_lock`. The same
timeout applies and the same ``StoreLockedError`` names the holder, so callers never branch.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from radiobject._os.files import file_kind
from radiobject.errors import StoreLockedError, UnsafePathError
from radiobject.storage.options import StorageOptions, is_remote, strip_file_scheme

LOCK_NAME = ".radiobject.lock"
#: Seconds a writer waits for the lock before ``StoreLockedError`` (env ``RADIOBJECT_LOCK_TIMEOUT``).
DEFAULT_TIMEOUT = 120.0

_registry_guard = threading.Lock()
_held: dict[str, _Held] = {}


class _Held:
    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


def _reset_after_fork() -> None:
    global _registry_guard
    _registry_guard = threading.Lock()
    for held in _held.values():
        if held.fd is not None:
            try:
                os.close(held.fd)  # the parent's flock stays with the parent's descriptor
            except OSError:
                pass
    _held.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def lock_timeout() -> float:
    """The configured lock timeout in seconds."""
    try:
        return float(os.environ.get("RADIOBJECT_LOCK_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(200).strip()
    except OSError:
        text = ""
    return text or "unknown holder"


@contextmanager
def write_lock(root: str, storage: StorageOptions | None = None, timeout: float | None = None) -> Iterator[None]:
    """Holds the write lock of the store or collection at ``root`` for the ``with`` block.

    Local paths: exclusive ``flock``, waiting at most ``timeout`` seconds (default
    :func:`lock_timeout`), then ``StoreLockedError`` naming the store and the holder's pid.
    ``s3://``: the conditional-write lock object of :mod:`radiobject.storage._s3_lock`.
    """
    if is_remote(root):
        from radiobject.storage._s3_lock import s3_write_lock

        with s3_write_lock(root, storage or StorageOptions(), lock_timeout() if timeout is None else timeout):
            yield
        return
    path = os.path.join(os.path.abspath(strip_file_scheme(root)), LOCK_NAME)
    with _registry_guard:
        held = _held.setdefault(path, _Held())
    wait = lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + wait
    if not held.rlock.acquire(timeout=max(wait, 0.0)):
        raise StoreLockedError(root, f"write lock held by another thread of this process for over {wait:.0f} s")
    try:
        if held.depth == 0:
            held.fd = _acquire(root, path, deadline, wait)
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.fd is not None:
                fd, held.fd = held.fd, None
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
    finally:
        held.rlock.release()


def _acquire(root: str, path: str, deadline: float, wait: float) -> int:
    if os.path.islink(path):
        raise UnsafePathError(root, f"{LOCK_NAME} is a symbolic link")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # a FIFO / device planted as the lock: never written through
        os.close(fd)
        raise UnsafePathError(root, f"{LOCK_NAME} is not a regular file (a {file_kind(mode)})")
    pause = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StoreLockedError(
                    root, f"write lock {LOCK_NAME} held for over {wait:.0f} s by {_holder(path)}"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
    os.ftruncate(fd, 0)
    os.pwrite(
        fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0
    )
    return fd
