"""One cache per node in shared memory (:class:`SharedMemoryCache`).

The same checked entry files as :class:`~ml.cache.disk.DiskCache`, in ``/dev/shm`` (tmpfs): file
pages *are* RAM and every process maps the same pages, so N workers reading a cached chunk hold
one copy, not N. The process that created it removes the directory at exit; pickled copies
(workers) share it.

Trust (another local process must not be able to feed the loader its own voxels):

* the directory name carries 128 random bits (``secrets``) unless one is given, and is created
  exclusively (``mkdir`` fails if it exists) with mode ``0700``; a named directory that already
  exists is joined only if it is a real directory (not a link) owned by this user with no group /
  other permissions, else :class:`~radiobject.errors.UnsafePathError`;
* every entry is created with ``O_EXCL`` and mode ``0600`` and carries a header (digest of the key
  = store URI, collection, obs ID, volume version and chunk; header and payload CRC32) that is
  checked, with the file's owner and mode, before the entry is used; a planted or damaged entry
  is ignored and removed.

Nothing left behind: a generated directory is removed when its process exits, and records its
creator (boot id, pid, process start time) in ``.owner``; a process killed before it could clean
up (SIGKILL, or SIGTERM from ``torchrun``) leaves it, and the next generated cache under the same
root removes every such directory of this user whose creator is gone (:func:`sweep_stale`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from radiobject._os import owners
from radiobject.errors import UnsafePathError
from radiobject.ml.cache import limits
from radiobject.ml.cache.disk import DiskCache

__all__ = ["SharedMemoryCache", "sweep_stale"]

_SHM_ROOT = Path("/dev/shm")
_GENERATED = re.compile(r"radiobject-cache-[0-9a-f]{32}")
_OWNER_FILE = ".owner"


class SharedMemoryCache(DiskCache):
    """One cache per node in shared memory (tmpfs), mapped by every worker process; not a copy per worker.

    Args:
        max_bytes: byte budget for the whole node (all processes together).
        name: directory name under ``root``; processes of this user using the same name share the
            cache. A fresh unguessable name when omitted (then only this object and its pickled
            copies share it).
        root: a tmpfs mount, ``/dev/shm`` by default (falls back to the temp dir if absent).
        cleanup: remove the directory when the creating process exits (default: only for a
            generated name).
        max_map_bytes: bytes of entries one process keeps mapped (see ``DiskCache``).

    Raises:
        UnsafePathError: ``name`` exists but is a link, not a directory, not owned by this user,
            or open to other users.
    """

    def __init__(
        self,
        max_bytes: int,
        name: str | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        cleanup: bool | None = None,
        max_map_bytes: int | None = None,
    ) -> None:
        base = Path(root) if root is not None else (_SHM_ROOT if _SHM_ROOT.is_dir() else Path(tempfile.gettempdir()))
        generated = name is None
        if name is not None and ("/" in name or name in ("", ".", "..") or "\0" in name):
            raise ValueError(f"SharedMemoryCache: invalid name {name!r}")
        free = shutil.disk_usage(base).free if base.is_dir() else 0
        if max_bytes > free:
            from radiobject.ml.errors import LoaderConfigError

            raise LoaderConfigError(
                f"SharedMemoryCache: max_bytes {max_bytes} exceeds the {free} bytes free in {base} "
                "(in Docker raise --shm-size)"
            )
        headroom = limits.memory_headroom()
        if headroom is not None and max_bytes > headroom:  # tmpfs pages are memory (the cgroup's too)
            limits.warn(
                f"SharedMemoryCache: max_bytes {max_bytes / 2**20:.0f} MiB exceeds the {headroom / 2**20:.0f} MiB "
                "this process may still use (memory limit / cgroup / RAM); its pages are memory: a full cache "
                "may end in the OOM killer (choose a smaller cache_bytes)",
            )
        if name is None:
            sweep_stale(base)
            while True:  # 128 random bits: a name no other process can guess and create first
                name = f"radiobject-cache-{secrets.token_hex(16)}"
                try:
                    os.mkdir(base / name, 0o700)
                    break
                except FileExistsError:
                    continue
        else:
            _make_or_join(base / name)
        self.name = name
        super().__init__(base / self.name, max_bytes, max_map_bytes=max_map_bytes)
        self._owner = os.getpid()
        if generated if cleanup is None else cleanup:
            atexit.register(_remove_if_owner, str(self.path), self._owner)
            me = owners.identity(self._owner)
            if generated and me is not None:
                _write_private(self.path / _OWNER_FILE, me)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "name": self.name, "owner": self._owner}

    def __setstate__(self, state: dict) -> None:
        _check_private(Path(state["path"]))  # a worker re-checks what it is about to trust
        self._setup(state["path"], state["max_bytes"], state.get("max_maps", 8192), state.get("max_map_bytes"))
        self.name, self._owner = state["name"], state["owner"]

    def close(self) -> None:
        """Remove the shared directory now (only from the creating process)."""
        self._drop_maps()
        _remove_if_owner(str(self.path), self._owner)


def _make_or_join(path: Path) -> None:
    try:
        os.mkdir(path, 0o700)  # exclusive: fails if anyone created it first
        os.chmod(path, 0o700)  # whatever the umask
    except FileExistsError:
        _check_private(path)


def _check_private(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UnsafePathError(str(path), "shared-memory cache directory vanished") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(str(path), "shared-memory cache path exists and is not a directory (or is a link)")
    if st.st_uid != os.getuid():
        raise UnsafePathError(
            str(path), f"shared-memory cache directory is owned by uid {st.st_uid}, not {os.getuid()}"
        )
    if st.st_mode & 0o077:
        raise UnsafePathError(
            str(path), f"shared-memory cache directory has mode {stat.S_IMODE(st.st_mode):o}; it must be private (0700)"
        )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def sweep_stale(root: str | os.PathLike[str]) -> list[Path]:
    """Remove the generated cache directories under ``root`` whose creating process is gone.

    Only directories with a generated name, owned by this user, private (``0700``), not links, and
    holding an ``.owner`` record of a process that ran before the last boot, or that ran in this
    pid namespace and no longer runs (its pid gone or now another process's) are removed. Others
    are left alone: named caches, and caches of processes in other pid namespaces (containers
    sharing ``/dev/shm``), whose liveness cannot be seen from here. Returns the directories removed.
    """
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        candidates = [e for e in os.scandir(root) if _GENERATED.fullmatch(e.name)]
        for entry in candidates:
            path = Path(entry.path)
            try:
                _check_private(path)
                fd = os.open(path / _OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd) as f:
                    owner = f.read(200).split()
            except (UnsafePathError, OSError):
                continue
            if owners.owner_state(" ".join(owner)) == owners.GONE:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _remove_if_owner(path: str, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)
