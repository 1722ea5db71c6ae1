"""Runs a check in a forked child, bounded in time (a deadlocked child is killed, not waited on)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def in_forked_child(check: Callable[[], bool], timeout: float = 30) -> bool | None:
    """``check()``'s result in a forked child (an exception counts as ``False``); ``None`` when the
    child did not end within ``timeout`` seconds (it is killed)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = False
        try:
            ok = bool(check())
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + timeout
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return None
    return os.waitstatus_to_exitcode(done[1]) == 0
