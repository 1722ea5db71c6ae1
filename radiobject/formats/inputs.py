"""Guards every input read goes through: only regular files are opened, sizes come from ``stat``.

A FIFO, a character or block device (``/dev/zero``), a socket or a folder handed in where a file is
expected would block a reader forever or grow its memory without end; :func:`regular_file_size`
refuses them with a typed error naming the path before anything is opened.
"""

from __future__ import annotations

import os
import stat

from radiobject._os.files import file_kind
from radiobject._os.memory import process_memory_left
from radiobject.errors import ImageReadError

__all__ = ["file_kind", "regular_file_size"]


def regular_file_size(path: str | os.PathLike[str], error: type[ImageReadError] = ImageReadError) -> int:
    """The size of ``path`` after checking (``stat``, never ``open``) that it is a regular file.

    Raises ``error(path, reason)`` when it does not exist, cannot be stat'ed, or is a FIFO,
    device, socket or folder.
    """
    p = str(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(p, "file does not exist") from None
    except OSError as exc:
        raise error(p, f"cannot stat ({exc.strerror or exc})") from exc
    except ValueError as exc:  # a NUL byte in the path
        raise error(p, f"not a usable path ({exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise error(p, f"not a regular file (a {file_kind(st.st_mode)}); only regular files are read")
    return int(st.st_size)


def max_image_bytes() -> int:
    """The memory budget of one image read (bytes): ``RADIOBJECT_MAX_IMAGE_BYTES``, else the least of
    16 GiB, half the RAM and what this process may still allocate under its address-space limit
    (``RLIMIT_AS``) and memory cgroups (``radiobject._os.memory.process_memory_left``). Read at each
    call; every reader (NIfTI, DICOM, TIFF) refuses more up front."""
    env = os.environ.get("RADIOBJECT_MAX_IMAGE_BYTES")
    if env:
        return int(env)
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 32 << 30
    budget = min(16 << 30, physical // 2)
    left = process_memory_left()
    return int(budget if left is None else min(budget, left))
