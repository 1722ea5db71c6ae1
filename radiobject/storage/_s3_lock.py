"""The write lock of an ``s3://`` store: one lock object, created and renewed with conditional writes.

The lock of ``s3://bucket/prefix`` is the object ``prefix/.radiobject.lock``; its JSON body names the
holder (host, pid, a random token), when it was acquired and renewed, and its lease in seconds.

- **Acquire**: ``PutObject`` with ``If-None-Match: *`` (created only when absent: atomic on the
  server). ``412 PreconditionFailed`` (or ``409 ConditionalRequestConflict``) means it is held:
  wait with jittered backoff, at most the lock timeout, then ``StoreLockedError`` naming the store
  and the holder. After a successful create the object is read back and must carry our token.
- **Lease and heartbeat**: while held, a daemon thread rewrites the object every ``lease / 3``
  seconds with ``If-Match: <our ETag>``. A holder that stops renewing (crash, ``kill -9``, a host
  that went away) leaves a *stale* object (``Last-Modified`` over lease + 1 s before ``Date``).
- **Take-over**: a waiter that finds a stale object overwrites it with ``If-Match: <its ETag>``;
  of several waiters only one can succeed (the others get 412 and keep waiting).
- **Release**: ``DeleteObject`` with ``If-Match: <our ETag>`` where honoured; elsewhere read, then
  deleted only if it still carries our token (that window matters only after our lease expired).
- **Lost lease**: a renewal that finds someone else's token, or a release that finds the object gone
  after our lease ran out, ends the ``with`` block with ``StoreLockedError`` (another writer may
  have published in between).

Support is probed once per process and bucket (a scratch object next to the lock): a server not
honouring ``If-None-Match`` / ``If-Match`` on ``PutObject`` gets no lock, one ``RuntimeWarning`` and
the single-writer rule (docs/integrity.md); ``RADIOBJECT_S3_LOCK=off`` skips lock and probe.

Requests: botocore with ``StorageOptions.s3fs_kwargs()``, each bounded to a third of the lease;
failures become ``RemoteStorageError``.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

from radiobject.errors import RemoteStorageError, StoreError, StoreLockedError
from radiobject.storage.faults import remote_errors
from radiobject.storage.options import StorageOptions

LOCK_NAME = ".radiobject.lock"
#: Seconds a holder's lease lasts without renewal (env ``RADIOBJECT_S3_LOCK_LEASE``, at least 1).
DEFAULT_LEASE_S = 30.0
_MAX_PAUSE_S = 0.5
_HANDLED = {404, 409, 412, 501}


def lease_seconds() -> float:
    """The configured lease of an S3 lock in seconds."""
    try:
        return max(1.0, float(os.environ.get("RADIOBJECT_S3_LOCK_LEASE", DEFAULT_LEASE_S)))
    except ValueError:
        return DEFAULT_LEASE_S


def enabled() -> bool:
    """False when ``RADIOBJECT_S3_LOCK=off`` (single-writer rule, no lock requests)."""
    return os.environ.get("RADIOBJECT_S3_LOCK", "auto").strip().lower() not in ("off", "0", "false", "no")


@lru_cache(maxsize=8)
def _client(storage: StorageOptions, pid: int, lease_s: float) -> Any:
    """The lock's S3 client: a request, retries included, ends within a third of the lease."""
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config

    kw = storage.s3fs_kwargs()
    config: dict[str, Any] = dict(kw["config_kwargs"])
    attempts = min(storage.retries + 1, 2)
    per_try = max(0.5, min(storage.timeout_s, lease_s / (3 * attempts)))
    config.update(connect_timeout=per_try, read_timeout=per_try, retries={"max_attempts": attempts, "mode": "standard"})
    if kw["anon"]:
        config["signature_version"] = UNSIGNED
    return botocore.session.Session().create_client(
        "s3",
        aws_access_key_id=kw["key"],
        aws_secret_access_key=kw["secret"],
        aws_session_token=kw["token"],
        config=Config(**config),
        **kw["client_kwargs"],
    )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Holder:
    """What a lock object says about its holder."""

    token: str
    host: str
    pid: int
    acquired_at: str
    renewed_at: str
    lease_s: float

    def describe(self) -> str:
        """``pid N on HOST since ISO (lease L s, renewed ISO)``."""
        return (
            f"pid {self.pid} on {self.host} since {self.acquired_at} "
            f"(lease {self.lease_s:g} s, renewed {self.renewed_at})"
        )


def parse_holder(body: bytes) -> Holder | None:
    """The holder recorded in a lock object's body; ``None`` when it is not one (damaged, foreign)."""
    try:
        d = json.loads(body)
        return Holder(
            str(d["token"]), str(d["host"]), int(d["pid"]), str(d["acquired_at"]), str(d["renewed_at"]),
            float(d["lease_s"]),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None


class LockObject:
    """Conditional requests on one lock object (``uri`` = ``s3://bucket/key``)."""

    def __init__(self, root: str, storage: StorageOptions, name: str = LOCK_NAME) -> None:
        if not root.partition("://")[2].split("/", 1)[0]:
            raise StoreError(root, "an object-store location needs a bucket: s3://bucket/prefix")
        self.root = root
        self.uri = root.rstrip("/") + "/" + name
        self.bucket, _, self.key = self.uri.split("://", 1)[1].partition("/")
        self.storage = storage.resolved()

    def call(self, op: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, response)``; 404 / 409 / 412 / 501 are answers, other failures raise
        ``RemoteStorageError`` (after the configured retries)."""
        from botocore.exceptions import ClientError

        with remote_errors(self.uri):
            try:
                client = _client(self.storage, os.getpid(), lease_seconds())
                resp = getattr(client, op)(Bucket=self.bucket, Key=self.key, **kw)
            except ClientError as exc:
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if status in _HANDLED:
                    return status, dict(exc.response)
                raise
        return int(resp["ResponseMetadata"]["HTTPStatusCode"]), resp

    def put(self, body: bytes, **cond: str) -> tuple[int, str]:
        """Writes the object under a condition; ``(status, new ETag or "")``."""
        status, resp = self.call("put_object", Body=body, ContentType="application/json", **cond)
        return status, str(resp.get("ETag", "")) if status == 200 else ""

    def get(self) -> tuple[Holder | None, str, float | None] | None:
        """``(holder, ETag, age in s by the server's clock)``; ``None`` when the object is absent."""
        status, resp = self.call("get_object")
        if status != 200:
            return None
        with remote_errors(self.uri):
            body = resp["Body"].read(64 * 1024)
        return parse_holder(body), str(resp.get("ETag", "")), _age(resp)

    def delete(self, **cond: str) -> int:
        """Deletes the object (under a condition); the HTTP status."""
        return self.call("delete_object", **cond)[0]


def _age(resp: dict[str, Any]) -> float | None:
    modified = resp.get("LastModified")
    if not isinstance(modified, datetime):
        return None
    date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        now = parsedate_to_datetime(date) if date else datetime.now(UTC)
    except (TypeError, ValueError):
        now = datetime.now(UTC)
    return (now - modified).total_seconds()


@dataclass(frozen=True)
class Support:
    """Which conditions the server honours (probed once per process, endpoint and bucket)."""

    writes: bool  # If-None-Match: * and If-Match on PutObject
    deletes: bool  # If-Match on DeleteObject
    detail: str


_support: dict[tuple[str | None, str], Support] = {}
_support_guard = threading.Lock()
_NO_ETAG = '"' + "0" * 32 + '"'


def support(target: LockObject) -> Support:
    """Probes (once) whether the server of ``target`` honours conditional writes and deletes."""
    key = (target.storage.endpoint_url, target.bucket)
    with _support_guard:
        if key not in _support:
            _support[key] = _probe(LockObject(target.root, target.storage, f"{LOCK_NAME}-probe-{uuid.uuid4().hex}"))
        return _support[key]


def _probe(p: LockObject) -> Support:
    try:
        first, _ = p.put(b"{}", IfNoneMatch="*")
        if first != 200:
            return Support(False, False, f"a conditional create of a new object answered {first}")
        again, _ = p.put(b"{}", IfNoneMatch="*")
        wrong, _ = p.put(b"{}", IfMatch=_NO_ETAG)
        writes = again == 412 and wrong == 412
        deleted = p.delete(IfMatch=_NO_ETAG)
        detail = f"If-None-Match -> {again}, If-Match -> {wrong}, conditional delete -> {deleted}"
        return Support(writes, deleted == 412, detail)
    finally:
        with suppress(RemoteStorageError):
            p.delete()  # a failing cleanup never hides the probe's own error


class Lease:
    """A held lock object: its token and current ETag, renewed by a heartbeat thread."""

    def __init__(self, target: LockObject, holder: Holder, etag: str, deletes: bool) -> None:
        self.target, self.holder, self.etag, self.deletes = target, holder, etag, deletes
        self.lost: str | None = None
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._beat, name=f"radiobject-lock {target.uri}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.holder.lease_s / 3):
            try:
                self.renew()
            except RemoteStorageError as exc:
                if time.monotonic() - self._renewed > self.holder.lease_s:
                    self.lost = f"the lease expired: it could not be renewed ({exc})"
            except Exception as exc:  # never a silent stop: the release reports it
                self.lost = f"the heartbeat failed: {type(exc).__name__}: {exc}"
            if self.lost is not None:
                return

    def renew(self) -> None:
        """Extends the lease (``If-Match`` our ETag); records ``lost`` when the object is no longer ours."""
        with self._guard:
            now = time.time()
            self.holder = replace(self.holder, renewed_at=_iso(now))
            status, etag = self.target.put(_body(self.holder, now), IfMatch=self.etag)
            if status == 200:
                self.etag, self._renewed = etag, time.monotonic()
                return
            self._recheck()

    def _recheck(self) -> bool:
        """After a refused request: is the object still ours (a retried request that had succeeded)?"""
        seen = self.target.get()
        if seen is not None and seen[0] is not None and seen[0].token == self.holder.token:
            self.etag, self._renewed = seen[1], time.monotonic()
            return True
        self.lost = "the lock object was deleted" if seen is None else f"it is now held by {_who(seen[0])}"
        return False

    def release(self) -> str | None:
        """Stops the heartbeat and deletes the object if it is still ours; the reason when it was lost."""
        self._stop.set()
        self._thread.join(self.target.storage.timeout_s * (self.target.storage.retries + 1) + 1)
        with self._guard:
            if self.lost is not None:
                return self.lost
            if self.deletes:
                status = self.target.delete(IfMatch=self.etag)
                if status == 412 and self._recheck():
                    status = self.target.delete(IfMatch=self.etag)
                if status == 412:
                    return self.lost or "it was taken over before the release"
                if status == 404 and time.monotonic() - self._renewed > self.holder.lease_s:
                    # gone after our lease ran out: taken over and released (before: our own retry)
                    return "the lease expired and the lock object was deleted before the release"
                return None
            seen = self.target.get()  # no conditional delete: read, compare, delete (a short window)
            if seen is not None and seen[0] is not None and seen[0].token == self.holder.token:
                self.target.delete()
                return None
            return "the lock object was deleted" if seen is None else f"it is now held by {_who(seen[0])}"


def _who(holder: Holder | None) -> str:
    return holder.describe() if holder is not None else "an unreadable lock object"


def _body(holder: Holder, now: float) -> bytes:
    d = {"radiobject_lock": 1, **asdict(holder), "expires_at": _iso(now + holder.lease_s)}
    return json.dumps(d, sort_keys=True).encode()


def acquire(target: LockObject, wait: float, lease_s: float | None = None) -> Lease | None:
    """Takes the lock object within ``wait`` seconds (``StoreLockedError`` naming the holder after
    that); ``None`` when the server does not honour conditional writes (no lock, one warning)."""
    sup = support(target)
    if not sup.writes:
        warnings.warn(
            f"{target.root}: the S3 server does not honour conditional writes ({sup.detail}); no write lock, "
            "so at most one writer may use this store at a time (docs/integrity.md)",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    now = time.time()
    me = Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), _iso(now), _iso(now), lease_s or lease_seconds())
    deadline, pause, holder = time.monotonic() + wait, 0.02, "an unknown holder"
    while True:
        status, _ = target.put(_body(me, time.time()), IfNoneMatch="*")
        if status not in (200, 409, 412):
            raise RemoteStorageError(target.uri, f"creating the lock object answered HTTP {status}")
        seen = target.get()  # read back (ours?) or see who holds it
        if seen is not None:
            found, etag, age = seen
            if found is not None and found.token == me.token:
                return Lease(target, me, etag, sup.deletes)
            holder = _who(found)
            lease = found.lease_s if found is not None else lease_seconds()
            if age is not None and age > lease + 1.0:  # stale: its holder stopped renewing
                took, new_etag = target.put(_body(me, time.time()), IfMatch=etag)
                if took == 200 and (again := target.get()) is not None and again[0] == me:
                    warnings.warn(
                        f"{target.root}: took over the stale write lock of {holder} ({age:.0f} s without renewal)",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    return Lease(target, me, again[1], sup.deletes)
            pause_now = pause
        else:
            pause_now = 0.0  # released between our create and our read: try again at once
        if time.monotonic() >= deadline:
            raise StoreLockedError(target.root, f"write lock {target.uri} held for over {wait:.1f} s by {holder}")
        time.sleep(min(pause_now * random.uniform(0.5, 1.0), max(deadline - time.monotonic(), 0.0)))
        pause = min(pause * 2, _MAX_PAUSE_S)


class _Held:
    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.lease: Lease | None = None


_registry_guard = threading.Lock()
_held: dict[str, _Held] = {}


def _reset_after_fork() -> None:
    global _registry_guard, _support_guard
    _registry_guard, _support_guard = threading.Lock(), threading.Lock()
    _held.clear()  # the parent holds its locks; a forked child holds none (and has no heartbeat)


os.register_at_fork(after_in_child=_reset_after_fork)


@contextmanager
def s3_write_lock(root: str, storage: StorageOptions, wait: float) -> Iterator[None]:
    """Holds the lock object of ``root`` for the ``with`` block (re-entrant within a process)."""
    if not enabled():
        yield
        return
    target = LockObject(root, storage)
    with _registry_guard:
        held = _held.setdefault(target.uri, _Held())
    deadline = time.monotonic() + wait
    if not held.rlock.acquire(timeout=max(wait, 0.0)):
        raise StoreLockedError(root, f"write lock held by another thread of this process for over {wait:g} s")
    try:
        if held.depth == 0:
            held.lease = acquire(target, max(deadline - time.monotonic(), 0.0))
        held.depth += 1
        ok = False
        try:
            yield
            ok = True
        finally:
            held.depth -= 1
            if held.depth == 0 and held.lease is not None:
                lease, held.lease = held.lease, None
                lost = lease.release()
                if lost is not None and ok:
                    raise StoreLockedError(
                        root,
                        f"write lock {target.uri} was lost while held: {lost}; another writer may have "
                        "published in between (run `radiobject verify`)",
                    )
    finally:
        held.rlock.release()
