"""File mechanics shared by the directory caches (disk and shared memory): atomic ``.npy`` publish,
``flock``-guarded LRU eviction by ``mtime``, entry listing and file identity."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: Suffix of published entries (temporary files start with ``.`` and end in ``.tmp``).
SUFFIX = ".npy"

#: Number of per-key loader lock files (``.lock-00`` ... ``.lock-63``).
LOCK_STRIPES = 64


def key_digest(key: str) -> str:
    """SHA-256 hex digest of ``key`` (file name and lock stripe are derived from it)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def entry_file(directory: Path, key: str) -> Path:
    """``directory/<2 hex>/<digest>.npy``: where ``key``'s array is published."""
    digest = key_digest(key)
    return directory / digest[:2] / (digest + SUFFIX)


def stripe_lock_name(key: str) -> str:
    """Name of the lock file that serialises loaders of ``key`` (one of :data:`LOCK_STRIPES`)."""
    stripe = int(key_digest(key)[:8], 16) % LOCK_STRIPES
    return f".lock-{stripe:02d}"


def identity(st: os.stat_result) -> tuple[int, int, int]:
    """A published file is never modified in place, only replaced: inode, device and size identify it."""
    return st.st_ino, st.st_dev, st.st_size


def touch(file: Path) -> None:
    """Set mtime to now with ns precision (the kernel's own stamp is jiffy-coarse: LRU ties)."""
    now = time.time_ns()
    os.utime(file, ns=(now, now))


@contextlib.contextmanager
def locked(directory: Path, name: str = ".lock") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory/name`` (no-op if the directory was removed)."""
    try:
        fh = open(directory / name, "a+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:  # directory removed (closed cache): nothing left to protect
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def publish_npy(file: Path, value: np.ndarray) -> bool:
    """Write ``value`` to ``file`` atomically: a unique temporary file in the same directory, then
    ``os.replace``, so readers in any process see a whole file or none. ``False`` (nothing written)
    when the cache directory no longer exists."""
    try:
        file.parent.mkdir(exist_ok=True)
    except FileNotFoundError:  # the cache directory was removed (closed): keep nothing
        return False
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(value), allow_pickle=False)
        touch(tmp)
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return True


def entries(directory: Path) -> Iterator[tuple[float, int, Path]]:
    """``(mtime, size, path)`` of every published entry (temporary files excluded)."""
    for sub in os.scandir(directory):
        if not sub.is_dir(follow_symlinks=False):
            continue
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(sub.path):
                if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        yield st.st_mtime, st.st_size, Path(entry.path)


def evict_lru(directory: Path, max_bytes: int) -> None:
    """Under the directory lock, delete least recently accessed entries until ``<= max_bytes`` remain."""
    with locked(directory):
        listed = sorted(entries(directory))
        total = sum(size for _, size, _ in listed)
        for _, size, file in listed:  # oldest access first
            if total <= max_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
            total -= size


def remove_all(directory: Path) -> None:
    """Under the directory lock, delete every published entry."""
    with locked(directory):
        for _, _, file in list(entries(directory)):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
