"""File mechanics shared by the directory caches (disk and shared memory).

Entries are private files (mode ``0600``, created with ``O_EXCL``, published with ``os.replace``)
in a layout of the form ``<dir>/<2 hex>/<sha256 of key>.rce``, each a small checked header plus
the raw array bytes:

* ``magic`` (8 bytes), header length, header CRC32;
* the SHA-256 of the full cache key (store URI, collection, obs ID, volume version, chunk), so an
  entry can only answer the key it was written for;
* payload CRC32 and length, then ``dtype`` and ``shape`` as JSON.

Readers verify the header and the owner / mode of the file on every first map, and the payload
CRC32 once per process per file; a file that fails any check is ignored (a miss) and removed. A
running byte total kept in ``.bytes`` (under an ``flock``) makes ``put`` O(1): the directory is only
listed when the total passes the budget, and then evicted down to a low-water mark, so listings are
rare (amortised O(1) per put).

A writer killed while writing (SIGKILL, the OOM killer, a preempted job) leaves its temporary
file; such files are not entries (never counted, never evicted), so each would hold its bytes
beyond the budget for good. :func:`sweep_temps` removes those whose writer is gone and that nobody
wrote for :data:`STALE_TEMP_SECONDS`; it runs with every eviction and when a cache is created.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import secrets
import stat
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: Suffix of published entries (temporary files start with ``.`` and end in ``.tmp``).
SUFFIX = ".rce"

#: Number of per-key loader lock files (``.lock-00`` ... ``.lock-63``).
LOCK_STRIPES = 64

#: Eviction deletes least recently used entries until the total is this fraction of the budget.
LOW_WATER = 0.8

#: A temporary file whose writer process is gone and that nobody wrote for this long is removed.
STALE_TEMP_SECONDS = 600.0

MAGIC = b"RADICH01"
_FIXED = struct.Struct("<8sII32sIQ")  # magic, header length, header crc, key digest, payload crc, payload len
_ALIGN = 64
_COUNTER = ".bytes"


def key_digest(key: str) -> bytes:
    """SHA-256 of ``key`` (file name, lock stripe and the header's identity field come from it)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def entry_file(directory: Path, key: str) -> Path:
    """``directory/<2 hex>/<digest>.rce``: where ``key``'s array is published."""
    digest = key_digest(key).hex()
    return directory / digest[:2] / (digest + SUFFIX)


def stripe_lock_name(key: str) -> str:
    """Name of the lock file that serialises loaders of ``key`` (one of :data:`LOCK_STRIPES`)."""
    stripe = int.from_bytes(key_digest(key)[:4], "big") % LOCK_STRIPES
    return f".lock-{stripe:02d}"


def identity(st: os.stat_result) -> tuple[int, int, int]:
    """A published file is never modified in place, only replaced: inode, device and size identify it."""
    return st.st_ino, st.st_dev, st.st_size


def touch(file: Path) -> None:
    """Set mtime to now with ns precision (the kernel's own stamp is jiffy-coarse: LRU ties)."""
    now = time.time_ns()
    os.utime(file, ns=(now, now))


def trusted(st: os.stat_result) -> bool:
    """A regular file owned by this user and not writable or readable by anyone else."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not (st.st_mode & 0o077)


@contextlib.contextmanager
def locked(directory: Path, name: str = ".lock") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory/name`` (no-op if the directory was removed)."""
    try:
        fd = os.open(directory / name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except FileNotFoundError:  # directory removed (closed cache): nothing left to protect
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _header(key: str, value: np.ndarray, payload_crc: int) -> bytes:
    meta = json.dumps({"dtype": value.dtype.str, "shape": list(value.shape)}).encode()
    length = _FIXED.size + len(meta)
    length += -length % _ALIGN
    body = _FIXED.pack(MAGIC, length, 0, key_digest(key), payload_crc, value.nbytes) + meta
    body = body.ljust(length, b"\0")
    crc = zlib.crc32(body)
    return _FIXED.pack(MAGIC, length, crc, key_digest(key), payload_crc, value.nbytes) + body[_FIXED.size :]


def publish(file: Path, key: str, value: np.ndarray) -> int | None:
    """Write ``value`` for ``key`` to ``file`` atomically (private temporary file + ``os.replace``).

    Returns the change in published bytes (new size minus any replaced entry), or ``None`` when
    the cache directory no longer exists (nothing written).
    """
    try:
        file.parent.mkdir(mode=0o700, exist_ok=True)
    except FileNotFoundError:  # the cache directory was removed (closed): keep nothing
        return None
    value = np.ascontiguousarray(value)
    payload = value.data.cast("B") if value.nbytes else b""
    header = _header(key, value, zlib.crc32(payload))
    tmp = file.with_name(f".{file.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileNotFoundError:
        return None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header)
            fh.write(payload)
        try:
            old = os.lstat(file).st_size
        except FileNotFoundError:
            old = 0
        try:
            os.replace(tmp, file)
        except FileNotFoundError:  # the cache was cleared or removed meanwhile: keep nothing
            return None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return len(header) + value.nbytes - old


def load(file: Path, key: str, *, verify_payload: bool = True) -> tuple[np.ndarray, os.stat_result] | None:
    """The array published for ``key`` in ``file``, memory-mapped read-only, with the file's stat.

    ``None`` when the file is absent. A file that is not private to this user, whose header is
    damaged or was written for another key, or whose payload fails its CRC32, is removed and
    ``None`` returned: it is never served.
    """
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, OSError):
        return None
    try:
        st = os.fstat(fd)
        if not trusted(st) or st.st_size < _FIXED.size:
            return _reject(file)
        mm = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    try:
        magic, length, hcrc, digest, pcrc, plen = _FIXED.unpack_from(mm, 0)
        if magic != MAGIC or digest != key_digest(key) or length > st.st_size or length + plen != st.st_size:
            return _reject(file, mm)
        head = bytearray(mm[:length])
        head[12:16] = b"\0\0\0\0"  # the header crc field itself
        if zlib.crc32(head) != hcrc:
            return _reject(file, mm)
        meta = json.loads(bytes(head[_FIXED.size :]).rstrip(b"\0"))
        dtype, shape = np.dtype(meta["dtype"]), tuple(int(s) for s in meta["shape"])
        if dtype.hasobject or int(np.prod(shape)) * dtype.itemsize != plen:
            return _reject(file, mm)
        if verify_payload and zlib.crc32(memoryview(mm)[length:]) != pcrc:
            return _reject(file, mm)
    except (ValueError, KeyError, TypeError, struct.error):
        return _reject(file, mm)
    array = np.frombuffer(mm, dtype=dtype, count=int(np.prod(shape)), offset=length).reshape(shape)
    return array, st


def _reject(file: Path, mm: mmap.mmap | None = None) -> tuple[np.ndarray, os.stat_result] | None:
    """Close ``mm``, remove ``file`` (an entry that must not be served); always ``None``."""
    if mm is not None:
        mm.close()
    with contextlib.suppress(OSError):
        file.unlink()
    return None


def add_bytes(directory: Path, delta: int) -> int:
    """Add ``delta`` to the directory's running byte total (under its lock); returns the new total."""
    with locked(directory):
        return _write_total(directory, max(0, _read_total(directory) + delta))


def _read_total(directory: Path) -> int:
    try:
        with open(directory / _COUNTER, "rb") as fh:
            raw = fh.read(8)
    except FileNotFoundError:
        return 0
    return int.from_bytes(raw, "little") if len(raw) == 8 else 0


def _write_total(directory: Path, total: int) -> int:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(directory / _COUNTER, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.pwrite(fd, int(total).to_bytes(8, "little"), 0)
        finally:
            os.close(fd)
    return total


def total_bytes(directory: Path) -> int:
    """The running byte total (O(1); exact after each eviction)."""
    return _read_total(directory)


def entries(directory: Path) -> Iterator[tuple[float, int, Path]]:
    """``(mtime, size, path)`` of every published entry (temporary files excluded)."""
    try:
        subs = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for sub in subs:
        if not sub.is_dir(follow_symlinks=False):
            continue
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(sub.path):
                if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        yield st.st_mtime, st.st_size, Path(entry.path)


def _writer_gone(name: str) -> bool:
    """Whether the process that named temporary file ``name`` (``.<entry>.<pid>.<thread>.<token>.tmp``)
    no longer runs (in this pid namespace; a writer seen elsewhere is judged by age alone)."""
    parts = name.split(".")
    if len(parts) != 7 or not parts[3].isdigit() or int(parts[3]) <= 0:
        return False
    pid = int(parts[3])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    return False


def sweep_temps(directory: Path, *, older_than: float = STALE_TEMP_SECONDS) -> int:
    """Remove the temporary files of writers that are gone and that nobody wrote for
    ``older_than`` seconds (left by a writer killed mid-write); returns the bytes freed."""
    now, freed = time.time(), 0
    try:
        subs = [s for s in os.scandir(directory) if s.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return 0
    for sub in subs:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(sub.path):
                if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than and _writer_gone(entry.name):
                        os.unlink(entry.path)
                        freed += st.st_size
    return freed


def evict_lru(directory: Path, max_bytes: int) -> None:
    """Under the directory lock, delete least recently accessed entries down to the low-water mark.

    Also resets the running total to the exact bytes left (it may drift when files are removed
    by hand).
    """
    with locked(directory):
        sweep_temps(directory)
        listed = sorted(entries(directory))
        total = sum(size for _, size, _ in listed)
        target = int(max_bytes * LOW_WATER) if total > max_bytes else total
        for _, size, file in listed:  # oldest access first
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
            total -= size
        _write_total(directory, total)


def remove_all(directory: Path) -> None:
    """Under the directory lock, delete every published entry."""
    with locked(directory):
        for _, _, file in list(entries(directory)):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
        _write_total(directory, 0)
