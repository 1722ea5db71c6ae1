"""The S3 write lock against a real server (moto_server subprocess on 127.0.0.1), with real processes:
critical sections never overlap, waiters give up naming the holder, stale leases are taken over,
a holder whose lease was taken over never deletes the new holder's lock, two ingests into one
store lose nothing."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from radiobject import RadiObject, StorageOptions, WriteOptions
from radiobject.errors import StoreLockedError
from radiobject.storage import _s3_lock
from radiobject.storage.locks import write_lock

from .conftest import BUCKET

pytestmark = [pytest.mark.s3, pytest.mark.timeout(180)]
ROUNDS = 12


def _s3(storage: StorageOptions) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=storage.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def _key(root: str) -> str:
    return root.split("://", 1)[1].partition("/")[2] + "/.radiobject.lock"


def _lock_body(storage: StorageOptions, root: str) -> dict[str, Any] | None:
    try:
        body = _s3(storage).get_object(Bucket=BUCKET, Key=_key(root))["Body"].read()
    except _s3(storage).exceptions.NoSuchKey:
        return None
    return dict(json.loads(body))


def _crashed_holder(storage: StorageOptions, root: str, lease_s: float) -> None:
    """The lock object a holder leaves behind when it is killed (no release, no more renewals)."""
    body = {
        "radiobject_lock": 1,
        "token": "f" * 32,
        "host": "crashed-host",
        "pid": 4242,
        "acquired_at": "2026-01-01T00:00:00Z",
        "renewed_at": "2026-01-01T00:00:00Z",
        "lease_s": lease_s,
        "expires_at": "2026-01-01T00:00:01Z",
    }
    _s3(storage).put_object(Bucket=BUCKET, Key=_key(root), Body=json.dumps(body).encode())


# --- children (spawned: module-level functions) ---


def _contend(root: str, storage: StorageOptions, log: str, start: Any, rounds: int) -> None:
    start.wait(60)
    for _ in range(rounds):
        with write_lock(root, storage, timeout=60):
            with open(log, "a") as f:
                f.write(f"start {os.getpid()} {time.time():.6f}\n")
            time.sleep(0.02)
            with open(log, "a") as f:
                f.write(f"end {os.getpid()} {time.time():.6f}\n")


def _hold(root: str, storage: StorageOptions, ready: Any, release: Any, out: Any) -> None:
    try:
        with write_lock(root, storage):
            ready.set()
            release.wait(60)
        out.put("released")
    except StoreLockedError as exc:
        out.put(f"lost: {exc}")


def _ingest(uri: str, manifest: str, participants: str, storage: StorageOptions, backend: str, out: Any) -> None:
    from radiobject.ingest import plan_from_manifest, run_ingest

    plan = plan_from_manifest(manifest, subjects=participants)
    rep = run_ingest(uri, plan, options=WriteOptions(backend=backend, chunks=(8, 8, 8)), storage=storage)
    out.put((rep.ok, rep.count("written"), rep.summary_table()))


# --- tests ---


def test_probe_finds_conditional_writes(s3_server: StorageOptions, s3_prefix: str) -> None:
    sup = _s3_lock.support(_s3_lock.LockObject(s3_prefix, s3_server))
    assert sup.writes and sup.deletes, sup.detail  # moto 5.2.5 honours If-None-Match / If-Match
    prefix = _key(s3_prefix)[: -len(".radiobject.lock")]
    assert "Contents" not in _s3(s3_server).list_objects_v2(Bucket=BUCKET, Prefix=prefix)  # the probe cleans up


def test_two_processes_never_overlap(s3_server: StorageOptions, s3_prefix: str, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    log, start = str(tmp_path / "log"), ctx.Event()
    procs = [ctx.Process(target=_contend, args=(s3_prefix, s3_server, log, start, ROUNDS)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(150)
    assert [p.exitcode for p in procs] == [0, 0]
    lines = [line.split() for line in Path(log).read_text().splitlines()]
    assert len(lines) == 4 * ROUNDS
    for i in range(0, len(lines), 2):  # every start is followed by the end of the same process
        (k1, pid1, t1), (k2, pid2, t2) = lines[i], lines[i + 1]
        assert (k1, k2, pid1) == ("start", "end", pid2), lines[max(0, i - 2) : i + 4]
        assert float(t1) <= float(t2)
    assert sorted({pid for _, pid, _ in lines}) == sorted(str(p.pid) for p in procs)
    assert _lock_body(s3_server, s3_prefix) is None  # released


def _holder(root: str, storage: StorageOptions) -> tuple[Any, Any, Any]:
    """A spawned process holding the lock of ``root`` (until ``release`` is set): (process, release, out)."""
    ctx = mp.get_context("spawn")
    ready, release, out = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_hold, args=(root, storage, ready, release, out))
    proc.start()
    if not ready.wait(60):
        proc.kill()
        pytest.fail("the holder process did not take the lock within 60 s")
    return proc, release, out


def test_waiter_gives_up_naming_the_holder(s3_server: StorageOptions, s3_prefix: str) -> None:
    proc, release, out = _holder(s3_prefix, s3_server)
    try:
        with pytest.raises(StoreLockedError, match=f"pid {proc.pid} on ") as err:
            with write_lock(s3_prefix, s3_server, timeout=0.5):
                pass
        assert s3_prefix in str(err.value)
        with write_lock(s3_prefix + "/elsewhere", s3_server, timeout=0.5):
            pass  # another root is not blocked
    finally:
        release.set()
        proc.join(60)
    assert proc.exitcode == 0 and out.get(timeout=10) == "released"
    with write_lock(s3_prefix, s3_server, timeout=5):
        pass  # released: free again


def test_live_foreign_lease_is_respected(s3_server: StorageOptions, s3_prefix: str) -> None:
    _crashed_holder(s3_server, s3_prefix, lease_s=600)  # recent and long: not stale
    with pytest.raises(StoreLockedError, match="pid 4242 on crashed-host"):
        with write_lock(s3_prefix, s3_server, timeout=0.3):
            pass
    assert _lock_body(s3_server, s3_prefix)["pid"] == 4242


def test_stale_lease_is_taken_over(s3_server: StorageOptions, s3_prefix: str) -> None:
    _crashed_holder(s3_server, s3_prefix, lease_s=1)  # stale once the server's clock is 2 s past it
    with pytest.warns(RuntimeWarning, match="took over the stale write lock of pid 4242"):
        with write_lock(s3_prefix, s3_server, timeout=30):
            assert _lock_body(s3_server, s3_prefix)["pid"] == os.getpid()
    assert _lock_body(s3_server, s3_prefix) is None


def test_taken_over_holder_keeps_the_new_lock(
    s3_server: StorageOptions, s3_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder paused past its lease (SIGSTOP) is taken over; resumed, it ends with StoreLockedError
    and leaves the new holder's lock object in place."""
    monkeypatch.setenv("RADIOBJECT_S3_LOCK_LEASE", "1")
    proc, release, out = _holder(s3_prefix, s3_server)
    try:
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGSTOP)
        monkeypatch.setenv("RADIOBJECT_S3_LOCK_LEASE", "30")
        with pytest.warns(RuntimeWarning, match=f"took over the stale write lock of pid {proc.pid}"):
            with write_lock(s3_prefix, s3_server, timeout=60):
                os.kill(proc.pid, signal.SIGCONT)
                release.set()
                assert out.get(timeout=60).startswith("lost: ")
                assert _lock_body(s3_server, s3_prefix)["pid"] == os.getpid()  # ours survived their release
        assert _lock_body(s3_server, s3_prefix) is None
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        release.set()
        proc.join(60)
    assert proc.exitcode == 0


@pytest.mark.parametrize("deletes", [True, False], ids=["conditional-delete", "read-check-delete"])
def test_release_never_deletes_another_holders_lock(
    s3_server: StorageOptions, s3_prefix: str, monkeypatch: pytest.MonkeyPatch, deletes: bool
) -> None:
    target = _s3_lock.LockObject(s3_prefix, s3_server)
    sup = _s3_lock.support(target)
    monkeypatch.setitem(_s3_lock._support, (target.storage.endpoint_url, BUCKET), _s3_lock.Support(True, deletes, ""))
    try:
        with pytest.raises(StoreLockedError, match="was lost while held: .*pid 4242 on crashed-host"):
            with write_lock(s3_prefix, s3_server):
                _crashed_holder(s3_server, s3_prefix, lease_s=600)  # as a take-over leaves it
        assert _lock_body(s3_server, s3_prefix)["pid"] == 4242
    finally:
        _s3_lock._support[(target.storage.endpoint_url, BUCKET)] = sup


def test_reentrant_and_heartbeat_renews(
    s3_server: StorageOptions, s3_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADIOBJECT_S3_LOCK_LEASE", "1")
    with write_lock(s3_prefix, s3_server):
        first = _lock_body(s3_server, s3_prefix)
        with write_lock(s3_prefix, s3_server, timeout=0):  # re-entrant: no wait, same object
            assert _lock_body(s3_server, s3_prefix)["token"] == first["token"]
        deadline = time.monotonic() + 20
        while _lock_body(s3_server, s3_prefix)["renewed_at"] == first["renewed_at"]:
            assert time.monotonic() < deadline, "the heartbeat never renewed the lease"
            time.sleep(0.2)
        assert _lock_body(s3_server, s3_prefix)["token"] == first["token"]
        time.sleep(2.5)  # past the 1 s lease: still ours, because it is renewed
        assert _lock_body(s3_server, s3_prefix)["token"] == first["token"]
    assert _lock_body(s3_server, s3_prefix) is None


@pytest.mark.slow
def test_two_concurrent_ingests_into_one_store(
    s3_server: StorageOptions, s3_prefix: str, tmp_path: Path, backend: str
) -> None:
    from radiobject.ingest import make_sample_cohort
    from radiobject.model.integrity import verify_store

    cohort = make_sample_cohort(tmp_path / "cohort", 3, (12, 14, 10))
    uri = f"{s3_prefix}/store"
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    args = (uri, str(cohort.manifest), str(cohort.participants), s3_server, backend, out)
    procs = [ctx.Process(target=_ingest, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=170) for _ in procs]
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert all(ok for ok, _, _ in results), [table for _, _, table in results]
    assert sum(written for _, written, _ in results) == 9, [table for _, _, table in results]  # each once
    radi = RadiObject(uri, storage=s3_server)
    for name in radi.collection_names:
        obs = radi[name].obs
        assert len(obs) == 3 and obs["obs_id"].is_unique
        for oid in radi[name].obs_ids:
            assert np.asarray(radi[name].volume(oid)[:]).shape == (12, 14, 10)
    report = verify_store(uri, s3_server)
    assert report.ok, report.findings
