"""Sources that block mid-read, for the stuck-source tests.

Two kinds: a *real* blocking ``open`` — another process holds a write lease (``F_SETLEASE``) on a
regular file, so every ``open`` of it blocks in the kernel until the lease is released (or the
system's ``lease-break-time`` passes), as on a hung network mount — and a reader hook that blocks
the read of one file until it is released (an event in this process, or a file for worker
processes: :func:`install_block` is a process-pool initializer).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

_HOLDER = r"""
import fcntl, os, signal, sys
signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease-break notice must not kill the holder
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
except OSError as exc:
    print(f"unsupported {exc}", flush=True)
    sys.exit(0)
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
"""


class LeaseHolder:
    """A process holding a write lease on ``path``: ``open(path)`` blocks until :meth:`release`."""

    def __init__(self, path: str) -> None:
        if not hasattr(__import__("fcntl"), "F_SETLEASE"):
            pytest.skip("file leases (F_SETLEASE) are Linux only")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "held":
            self.release()
            pytest.skip(f"this file system gives no file lease ({line or 'holder failed'})")

    def release(self) -> None:
        """Releases the lease (blocked opens go on) and waits for the holder to end."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def blocking(original: Callable[..., Any], stuck: str, wait: Callable[[], None]) -> Callable[..., Any]:
    """``original`` (a ``read_image``), except that reading ``stuck`` first calls ``wait()``."""

    def read(path: str, *args: Any, **kwargs: Any) -> Any:
        if os.path.abspath(path) == os.path.abspath(stuck):
            wait()
        return original(path, *args, **kwargs)

    return read


def wait_for_file(release: str, limit_s: float = 120.0) -> Callable[[], None]:
    """A ``wait`` that returns once ``release`` exists (at most ``limit_s``: a test never leaks a
    thread forever)."""

    def wait() -> None:
        end = time.monotonic() + limit_s
        while not os.path.exists(release) and time.monotonic() < end:
            time.sleep(0.05)

    return wait


def install_block(stuck: str, release: str) -> None:
    """Process-pool initializer: in this worker, reading ``stuck`` blocks until ``release`` exists."""
    import radiobject.ingest.sources as sources

    sources.read_image = blocking(sources.read_image, stuck, wait_for_file(release))  # type: ignore[assignment]


def event_wait(event: threading.Event, limit_s: float = 120.0) -> Callable[[], None]:
    """A ``wait`` on ``event`` (at most ``limit_s``)."""
    return lambda: (event.wait(limit_s), None)[1]
