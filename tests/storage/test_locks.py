"""The write lock without an S3 server: the local ``flock`` lock (re-entrant, bounded, no links) and
the parts of the S3 lock that need no server (settings, lock bodies, a dead endpoint, ``off``)."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from radiobject import StorageOptions
from radiobject.errors import RemoteStorageError, StoreLockedError, UnsafePathError
from radiobject.storage import _s3_lock
from radiobject.storage.locks import LOCK_NAME, lock_timeout, write_lock


def test_local_lock_is_reentrant_and_records_the_holder(tmp_path: Path) -> None:
    with write_lock(str(tmp_path)):
        with write_lock(str(tmp_path), timeout=0):
            text = (tmp_path / LOCK_NAME).read_text()
            assert f"pid {os.getpid()} on {socket.gethostname()} since " in text


def test_local_lock_other_thread_waits_then_fails(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with write_lock(str(tmp_path), timeout=0.2):
                pass
        except StoreLockedError as exc:
            errors.append(exc)

    with write_lock(str(tmp_path)):
        t = threading.Thread(target=other)
        t.start()
        t.join(30)
    assert len(errors) == 1 and str(tmp_path) in str(errors[0])
    with write_lock(str(tmp_path), timeout=0.2):  # released: free again
        pass


def test_local_lock_refuses_a_symlinked_lock_file(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    store = tmp_path / "store"
    store.mkdir()
    (store / LOCK_NAME).symlink_to(target)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        with write_lock(str(store)):
            pass
    assert target.read_text() == "keep me"


def test_timeout_and_lease_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIOBJECT_LOCK_TIMEOUT", "7.5")
    assert lock_timeout() == 7.5
    monkeypatch.setenv("RADIOBJECT_LOCK_TIMEOUT", "soon")
    assert lock_timeout() == 120.0
    monkeypatch.setenv("RADIOBJECT_S3_LOCK_LEASE", "0.1")
    assert _s3_lock.lease_seconds() == 1.0  # at least 1 s (HTTP dates have 1 s resolution)
    monkeypatch.setenv("RADIOBJECT_S3_LOCK_LEASE", "x")
    assert _s3_lock.lease_seconds() == _s3_lock.DEFAULT_LEASE_S
    monkeypatch.setenv("RADIOBJECT_S3_LOCK", "off")
    assert not _s3_lock.enabled()
    monkeypatch.delenv("RADIOBJECT_S3_LOCK")
    assert _s3_lock.enabled()


def test_lock_body_round_trip_and_damage() -> None:
    holder = _s3_lock.Holder("a" * 32, "host-1", 77, "2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z", 30.0)
    parsed = _s3_lock.parse_holder(_s3_lock._body(holder, 0.0))
    assert parsed == holder and parsed.describe().startswith("pid 77 on host-1 since 2026-01-01T00:00:00Z")
    assert json.loads(_s3_lock._body(holder, 0.0))["expires_at"] == "1970-01-01T00:00:30Z"
    for bad in (b"", b"not json", b"{}", b'{"token": 1}', b"[]"):
        assert _s3_lock.parse_holder(bad) is None


def _dead_endpoint() -> StorageOptions:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])  # closed again: connections are refused at once
    return StorageOptions(endpoint_url=f"http://127.0.0.1:{port}", key="k", secret="s", timeout_s=1, retries=0)


def test_s3_lock_on_a_dead_server_is_a_remote_error() -> None:
    with pytest.raises(RemoteStorageError, match="s3://nobucket/store/.radiobject.lock"):
        with write_lock("s3://nobucket/store", _dead_endpoint(), timeout=1):
            pass


def test_s3_lock_off_sends_no_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIOBJECT_S3_LOCK", "off")
    ran = False
    with write_lock("s3://nobucket/store", _dead_endpoint(), timeout=1):
        ran = True
    assert ran


def test_an_s3_lock_without_a_bucket_is_a_typed_error() -> None:
    from radiobject.errors import StoreError
    from radiobject.storage._s3_lock import LockObject
    from radiobject.storage.options import StorageOptions

    for root in ("s3://", "s3:///prefix", "bucket-only"):
        with pytest.raises(StoreError, match="needs a bucket"):
            LockObject(root, StorageOptions())
    assert LockObject("s3://b/p", StorageOptions()).key == "p/.radiobject.lock"
