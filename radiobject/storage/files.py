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

from radiobject.storage.options import StorageOptions, is_remote, strip_file_scheme


def join(uri: str, *parts: str) -> str:
    """Joins path components with ``/`` (also for local paths; Python accepts them everywhere)."""
    out = uri.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


@lru_cache(maxsize=8)
def _s3fs(storage: StorageOptions, pid: int, asynchronous: bool = False) -> Any:
    import s3fs

    s = storage.resolved()
    client_kwargs: dict[str, Any] = {"region_name": s.region}
    if s.endpoint_url:
        client_kwargs["endpoint_url"] = s.endpoint_url
    token = dict(s.extra).get("session_token")
    if token is None and s.key and s.key == os.environ.get("AWS_ACCESS_KEY_ID"):
        token = os.environ.get("AWS_SESSION_TOKEN")
    return s3fs.S3FileSystem(
        key=s.key, secret=s.secret, token=token, anon=s.anon, client_kwargs=client_kwargs, use_listings_cache=False,
        asynchronous=asynchronous,
    )


def remote_fs(storage: StorageOptions, asynchronous: bool = False) -> Any:
    """The fsspec filesystem for ``s3://`` URIs with these options (cached per process)."""
    return _s3fs(storage.resolved(), os.getpid(), asynchronous)  # resolved: env changes give a new client


def _remote_path(uri: str) -> str:
    return uri.split("://", 1)[1]


def exists(uri: str, storage: StorageOptions) -> bool:
    """True when a file or folder exists at ``uri``."""
    if is_remote(uri):
        return bool(remote_fs(storage).exists(_remote_path(uri)))
    return os.path.exists(strip_file_scheme(uri))


def read_bytes(uri: str, storage: StorageOptions) -> bytes:
    """The content of one object; ``FileNotFoundError`` when absent."""
    if is_remote(uri):
        return bytes(remote_fs(storage).cat_file(_remote_path(uri)))
    with open(strip_file_scheme(uri), "rb") as f:
        return f.read()


def write_bytes_atomic(uri: str, data: bytes, storage: StorageOptions) -> None:
    """Writes one object so that readers see either nothing or all of it."""
    if is_remote(uri):
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
    """Parses a JSON object."""
    return json.loads(read_bytes(uri, storage))


def write_json_atomic(uri: str, obj: Any, storage: StorageOptions) -> None:
    """Writes a JSON object atomically (floats round-trip exactly: ``repr`` is shortest-exact)."""
    write_bytes_atomic(uri, json.dumps(obj, indent=1, sort_keys=True).encode(), storage)


def listdir(uri: str, storage: StorageOptions) -> list[str]:
    """Names (not paths) directly under ``uri``, sorted; empty when it does not exist."""
    if is_remote(uri):
        fs = remote_fs(storage)
        root = _remote_path(uri).rstrip("/")
        try:
            entries = fs.ls(root, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries if e.rstrip("/") != root)
    try:
        return sorted(os.listdir(strip_file_scheme(uri)))
    except FileNotFoundError:
        return []


def remove(uri: str, storage: StorageOptions) -> None:
    """Removes a file or a whole folder; nothing happens when it is absent."""
    if is_remote(uri):
        fs = remote_fs(storage)
        path = _remote_path(uri)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        return
    path = strip_file_scheme(uri)
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def makedirs(uri: str, storage: StorageOptions) -> None:
    """Creates a local folder (object stores have no folders: nothing to do)."""
    if not is_remote(uri):
        os.makedirs(strip_file_scheme(uri), exist_ok=True)
