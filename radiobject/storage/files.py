"""Small objects beside the arrays (JSON documents, Parquet fragments), local or on S3.

Local paths use the OS directly (atomic ``os.replace``); ``s3://`` goes through fsspec / s3fs,
where a single PUT is already atomic. Filesystems are cached per process, never across ``fork``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from functools import lru_cache
from typing import Any

from radiobject._os.files import read_regular
from radiobject.errors import CorruptDataError
from radiobject.storage.checksums import parse_checked_json, seal_json
from radiobject.storage.faults import remote_errors
from radiobject.storage.options import StorageOptions, as_location, is_remote, strip_file_scheme


def join(uri: str | os.PathLike[str], *parts: str) -> str:
    """Joins path components with ``/`` (also for local paths; Python accepts them everywhere)."""
    out = as_location(uri).rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


@lru_cache(maxsize=8)
def _s3fs(storage: StorageOptions, pid: int, asynchronous: bool = False) -> Any:
    import s3fs

    return s3fs.S3FileSystem(asynchronous=asynchronous, **storage.s3fs_kwargs())


def remote_fs(storage: StorageOptions, asynchronous: bool = False) -> Any:
    """The fsspec filesystem for ``s3://`` URIs with these options (cached per process)."""
    return _s3fs(storage.resolved(), os.getpid(), asynchronous)  # resolved: env changes give a new client


def _remote_path(uri: str) -> str:
    return uri.split("://", 1)[1]


def exists(uri: str, storage: StorageOptions) -> bool:
    """True when a file or folder exists at ``uri``."""
    if is_remote(uri):
        with remote_errors(uri):
            return bool(remote_fs(storage).exists(_remote_path(uri)))
    return os.path.exists(strip_file_scheme(uri))


def read_bytes(uri: str, storage: StorageOptions) -> bytes:
    """The content of one object; ``FileNotFoundError`` when absent, ``CorruptDataError`` when a
    local path is not a regular file (a FIFO, device, socket or folder: never opened blocking)."""
    if is_remote(uri):
        with remote_errors(uri):
            return bytes(remote_fs(storage).cat_file(_remote_path(uri)))
    path = strip_file_scheme(uri)
    return read_regular(path, lambda reason: CorruptDataError(path, reason))  # a FIFO would block forever


def write_bytes_atomic(uri: str, data: bytes, storage: StorageOptions) -> None:
    """Writes one object so that readers see either nothing or all of it."""
    if is_remote(uri):
        with remote_errors(uri):
            remote_fs(storage).pipe_file(_remote_path(uri), data)
        return
    path = strip_file_scheme(uri)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    head, tail = os.path.split(path)
    tmp = os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex}")  # hidden: listings skip it
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(uri: str, storage: StorageOptions) -> Any:
    """Parses a JSON object; one that carries a checksum must match it (``CorruptDataError``)."""
    return parse_checked_json(read_bytes(uri, storage), uri)


def write_json_atomic(uri: str, obj: Any, storage: StorageOptions) -> None:
    """Writes a JSON object atomically (floats round-trip exactly: ``repr`` is shortest-exact),
    with a checksum member (see ``radiobject.storage.checksums.seal_json``)."""
    if isinstance(obj, dict):
        obj = seal_json(obj, in_attributes="zarr_format" in obj)
    write_bytes_atomic(uri, json.dumps(obj, indent=1, sort_keys=True).encode(), storage)


def listdir(uri: str, storage: StorageOptions) -> list[str]:
    """Names (not paths) directly under ``uri``, sorted; empty when it does not exist."""
    if is_remote(uri):
        fs = remote_fs(storage)
        root = _remote_path(uri).rstrip("/")
        try:
            with remote_errors(uri):
                entries = fs.ls(root, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries if e.rstrip("/") != root)
    try:
        return sorted(os.listdir(strip_file_scheme(uri)))
    except (FileNotFoundError, NotADirectoryError):
        return []


def check_no_symlinks(root: str, uri: str) -> None:
    """``UnsafePathError`` unless ``uri`` lies inside ``root`` with no symbolic link below ``root``.

    Every component after ``root`` (which itself may be a link the user chose) is checked with
    ``lstat``; components that do not exist yet are fine. Object stores have no links.
    """
    from radiobject.errors import UnsafePathError

    if is_remote(uri):
        if not uri.rstrip("/").startswith(root.rstrip("/") + "/") and uri.rstrip("/") != root.rstrip("/"):
            raise UnsafePathError(root, f"{uri} is outside the store")
        return
    base = os.path.abspath(strip_file_scheme(root))
    path = os.path.abspath(strip_file_scheme(uri))
    rel = os.path.relpath(path, base)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        raise UnsafePathError(root, f"{uri} is outside the store")
    cur = base
    for part in [] if rel == os.curdir else rel.split(os.sep):
        cur = os.path.join(cur, part)
        if os.path.islink(cur):
            raise UnsafePathError(root, f"{cur} is a symbolic link; radiobject never writes or deletes through one")


def contained_path(root: str, *parts: str) -> str:
    """``root/part/...`` when each part is one plain path component and no existing component
    below ``root`` is a symbolic link; ``UnsafePathError`` otherwise (output folders, exports)."""
    from radiobject.errors import UnsafePathError

    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise UnsafePathError(root, f"{part!r} is not a single file or folder name")
    path = os.path.join(root, *parts)
    check_no_symlinks(root, path)
    return path


def mtime(uri: str, storage: StorageOptions) -> float | None:
    """Seconds since the epoch of the last change of a local file or folder (``None`` if absent or remote)."""
    if is_remote(uri):
        return None
    try:
        return os.lstat(strip_file_scheme(uri)).st_mtime
    except FileNotFoundError:
        return None


def remove(uri: str, storage: StorageOptions, root: str | None = None) -> None:
    """Removes a file or a whole folder; nothing happens when it is absent.

    With ``root``: first ``check_no_symlinks(root, uri)`` (``UnsafePathError``), so that a link
    planted inside a store never makes radiobject delete the files of its target.
    """
    if root is not None:
        check_no_symlinks(root, uri)
    if is_remote(uri):
        fs = remote_fs(storage)
        path = _remote_path(uri)
        with remote_errors(uri):
            if fs.exists(path):
                fs.rm(path, recursive=True)
        return
    path = strip_file_scheme(uri)
    if os.path.islink(path):
        os.remove(path)  # the link itself, never its target
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def makedirs(uri: str, storage: StorageOptions) -> None:
    """Creates a local folder (object stores have no folders: nothing to do)."""
    if not is_remote(uri):
        os.makedirs(strip_file_scheme(uri), exist_ok=True)
