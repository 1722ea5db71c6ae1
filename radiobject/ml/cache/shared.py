"""One cache per node in shared memory (:class:`SharedMemoryCache`).

The same ``.npy`` files as :class:`~ml.cache.disk.DiskCache`, in ``/dev/shm`` (tmpfs): file pages
*are* RAM and every process maps the same pages, so N workers reading a cached volume hold one
copy, not N. The process that created it removes the directory at exit; pickled copies (workers)
share it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from radiobject.ml.cache.disk import DiskCache

__all__ = ["SharedMemoryCache"]

_SHM_ROOT = Path("/dev/shm")


class SharedMemoryCache(DiskCache):
    """One cache per node in shared memory (tmpfs), mapped by every worker process; not a copy per worker.

    Args:
        max_bytes: byte budget for the whole node (all processes together).
        name: directory name under ``root``; processes using the same name share the cache. A
            fresh unique name when omitted (then only this object and its pickled copies share it).
        root: a tmpfs mount, ``/dev/shm`` by default (falls back to the temp dir if absent).
        cleanup: remove the directory when the creating process exits (default: only for a
            generated name).
    """

    def __init__(
        self,
        max_bytes: int,
        name: str | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        cleanup: bool | None = None,
    ) -> None:
        base = Path(root) if root is not None else (_SHM_ROOT if _SHM_ROOT.is_dir() else Path(tempfile.gettempdir()))
        generated = name is None
        self.name = name or f"radiobject-cache-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        if "/" in self.name or self.name in ("", ".", ".."):
            raise ValueError(f"SharedMemoryCache: invalid name {self.name!r}")
        free = shutil.disk_usage(base).free if base.is_dir() else 0
        if max_bytes > free:
            raise ValueError(
                f"SharedMemoryCache: max_bytes {max_bytes} exceeds the {free} bytes free in {base} "
                "(in Docker raise --shm-size)"
            )
        super().__init__(base / self.name, max_bytes)
        self._owner = os.getpid()
        if generated if cleanup is None else cleanup:
            atexit.register(_remove_if_owner, str(self.path), self._owner)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "name": self.name, "owner": self._owner}

    def __setstate__(self, state: dict) -> None:
        DiskCache.__init__(self, state["path"], state["max_bytes"], max_maps=state.get("max_maps", 32))
        self.name, self._owner = state["name"], state["owner"]

    def close(self) -> None:
        """Remove the shared directory now (only from the creating process)."""
        with self._maps_lock:
            self._maps.clear()
        _remove_if_owner(str(self.path), self._owner)


def _remove_if_owner(path: str, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)
