"""A storage server that dies or stops answering ends reads and writes with a typed
RemoteStorageError naming the object, within the configured timeout and retries: never a hang,
never a raw client traceback. Each test runs its own moto_server so it can kill it."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from radiobject import StorageOptions, WriteOptions
from radiobject.bench.s3server import LocalS3, LocalS3Error, moto_server_command
from radiobject.errors import RemoteStorageError
from radiobject.model.volume import Volume
from radiobject.storage.faults import remote_failure

pytestmark = pytest.mark.s3

#: per-request budget in these tests; an operation makes a handful of requests, each retried once
TIMEOUT_S = 2.0
BOUND_S = 90.0


@pytest.fixture
def dying_server() -> Iterator[tuple[StorageOptions, subprocess.Popen[bytes], int]]:
    if moto_server_command(0) is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    try:
        server = LocalS3(bucket="faults", key="t", secret="t").start()
    except LocalS3Error as exc:
        pytest.fail(str(exc))
    assert server.proc is not None
    try:
        yield server.storage_options(timeout_s=TIMEOUT_S, retries=1), server.proc, server.port
    finally:
        server.stop()


class _BlackHole:
    """Accepts TCP connections on the port and never answers (a hung server)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.5)
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def _volume(storage: StorageOptions, backend: str) -> tuple[str, np.ndarray]:
    uri = f"s3://faults/{uuid.uuid4().hex[:8]}"
    data = np.arange(40 * 40 * 40, dtype=np.float32).reshape(40, 40, 40)
    Volume.from_numpy(uri, data, np.eye(4), storage=storage, options=WriteOptions(backend=backend, chunks=(8, 8, 8)))
    return uri, data


@pytest.mark.parametrize("mode", ["refused", "hung"])
def test_read_after_server_dies_is_typed_and_bounded(
    dying_server: tuple[StorageOptions, subprocess.Popen[bytes], int], backend: str, mode: str
) -> None:
    storage, proc, port = dying_server
    uri, data = _volume(storage, backend)
    vol = Volume(uri, storage=storage)
    np.testing.assert_array_equal(vol[0:8, 0:8, 0:8], data[0:8, 0:8, 0:8])
    proc.kill()
    proc.wait(10)
    hole = _BlackHole(port) if mode == "hung" else None
    try:
        t0 = time.monotonic()
        with pytest.raises(RemoteStorageError) as info:
            Volume(uri, storage=storage)[24:40, 24:40, 24:40]  # not cached: needs the server
        assert time.monotonic() - t0 < BOUND_S
        assert "faults" in str(info.value)
    finally:
        if hole:
            hole.close()


def test_write_after_server_dies_is_typed(
    dying_server: tuple[StorageOptions, subprocess.Popen[bytes], int], backend: str
) -> None:
    storage, proc, _ = dying_server
    proc.kill()
    proc.wait(10)
    t0 = time.monotonic()
    with pytest.raises(RemoteStorageError):
        _volume(storage, backend)
    assert time.monotonic() - t0 < BOUND_S


def test_classification() -> None:
    assert remote_failure(ValueError("ABORTED: CURL error Timeout was reached [curl_code='28']"))
    assert remote_failure(ConnectionRefusedError(111, "refused"))
    assert remote_failure(ValueError("bad shape")) is None
    assert remote_failure(KeyError("x")) is None
