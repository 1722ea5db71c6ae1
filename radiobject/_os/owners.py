"""Which process owns something, and whether that process still runs.

A process is named by ``"<boot id> <pid namespace> <pid> <start time>"`` (:func:`identity`): a pid
alone is reused by the kernel, the start time (``/proc/<pid>/stat`` field 22) makes it unique
within one boot, and the boot id and pid namespace say where the pid means anything. Used for
records that must outlive a process killed without cleaning up (``SIGKILL``, the OOM killer, a
preempted job): the shared-memory cache's ``.owner`` file and a store being built.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["ALIVE", "GONE", "UNKNOWN", "identity", "owner_state", "this_host", "this_process"]

#: :func:`owner_state` results.
ALIVE, GONE, UNKNOWN = "alive", "gone", "unknown"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def identity(pid: int) -> str | None:
    """``"<boot id> <pid namespace> <pid> <start time>"`` of a running process of this pid namespace
    (``None``: gone, or no ``/proc``)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
        start = raw.rsplit(b")", 1)[1].split()[19].decode()  # field 22, starttime (comm may hold spaces)
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return f"{_boot_id()} {_pid_namespace()} {pid} {start}"


def this_process() -> str:
    """This process's :func:`identity` (``"<pid>"`` alone where there is no ``/proc``)."""
    return identity(os.getpid()) or str(os.getpid())


def this_host() -> str:
    """This machine's host name (records made on another host cannot be checked from here)."""
    return socket.gethostname()


def owner_state(owner: str, host: str | None = None) -> str:
    """:data:`ALIVE`, :data:`GONE` or :data:`UNKNOWN` for a process :func:`identity` made on ``host``.

    ``GONE`` only when certain: same host and an earlier boot, or same boot and pid namespace and
    the pid no longer runs (or now is another process). Another host, another pid namespace (a
    container sharing the files) or a record without ``/proc`` facts is ``UNKNOWN``.
    """
    if host is not None and host != this_host():
        return UNKNOWN
    parts = owner.split()
    boot, namespace = _boot_id(), _pid_namespace()
    if len(parts) != 4 or not parts[2].isdigit() or not boot or not namespace:
        return UNKNOWN
    if parts[0] != boot:
        return GONE
    if parts[1] != namespace:
        return UNKNOWN
    return ALIVE if identity(int(parts[2])) == owner else GONE
