"""Local files opened without blocking on what is not a regular file (rank 0: no radiobject imports).

``open()`` of a FIFO blocks until a writer appears, and a character device (``/dev/zero``) or a
socket never ends: one such file planted inside a store or an input tree would hang a reader or
``verify`` forever. :func:`open_regular` opens with ``O_NONBLOCK`` (no effect on a regular file's
reads), checks the open descriptor with ``fstat`` (no race between a check and the open) and
refuses anything else.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

__all__ = ["file_kind", "open_regular", "read_regular"]

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def file_kind(mode: int) -> str:
    """A short name of what a ``stat`` mode describes (``regular file``, ``FIFO``, ``device``, ...)."""
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def open_regular(path: str, error: Callable[[str], Exception]) -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file ``path`` and its ``fstat``.

    Raises ``error(reason)`` (closing the descriptor) when ``path`` is a FIFO, device, socket or
    folder; ``OSError`` (``FileNotFoundError`` ...) as ``os.open`` does."""
    fd = os.open(path, _FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"not a regular file (a {file_kind(st.st_mode)}); only regular files are read")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str, error: Callable[[str], Exception]) -> bytes:
    """The whole content of the regular file ``path`` (:func:`open_regular`'s checks first)."""
    fd, st = open_regular(path, error)
    with os.fdopen(fd, "rb") as f:
        return f.read()
