"""How much memory this process may still take: the limit the caches and whole-volume reads respect.

A loader often runs under a limit smaller than the machine: an address-space limit (``ulimit -v``,
``RLIMIT_AS``), a container's memory cgroup (v1 or v2, with its ancestors), or simply the RAM
available. :func:`memory_headroom` is the smallest of what is left under each of them, so a
cohort larger than that memory is read by chunks (never decoded whole), a chunk pool is not
grown past it, and a read that cannot fit is refused with a typed error before it is allocated
instead of ending in the kernel's OOM killer. The limits are read by ``radiobject._os.memory``
(shared with the image readers of ``formats``); this module adds the warning the caches give.
"""

from __future__ import annotations

import warnings

from radiobject._os.memory import memory_headroom

__all__ = ["CacheMemoryWarning", "memory_headroom", "warn"]


class CacheMemoryWarning(ResourceWarning):
    """A cache setting does not fit the memory this process may use; the loader falls back
    (chunk reads instead of whole volumes, a smaller chunk pool) and says so."""


def warn(message: str) -> None:
    """A :class:`CacheMemoryWarning` with ``message`` (each decision that falls back warns once: it
    is taken once per reader and process)."""
    warnings.warn(message, CacheMemoryWarning, stacklevel=3)
