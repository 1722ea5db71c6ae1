"""One shared-memory cache per *node* for the ranks of a ``torch.distributed`` job: :func:`node_shared_cache`.

A :class:`~radiobject.ml.cache.SharedMemoryCache` without a name is private to the process that
created it (and its workers); DDP ranks on one node share one only when they use the same
directory. This module picks that directory so that

* the ranks of one node share one directory (one copy of each chunk per node, not per rank);
* every node has its own, with a fresh unguessable name: no two nodes (two ``torchrun`` agents on
  one host included, each ``--nnodes`` agent being a node) and no two jobs (torchrun's run id is
  ``"none"`` unless ``--rdzv-id`` is given, so it cannot name anything) ever join one by accident;
* nobody trusts a directory it did not see created: the node's leader creates it exclusively
  (mode ``0700``), the other ranks join only an existing private directory of this user
  (:class:`~radiobject.errors.UnsafePathError` otherwise, then they fall back to a cache of
  their own with a warning).

A node is the ranks sharing a host name and torchrun's ``GROUP_RANK`` (the agent's rank; absent
outside torchrun, e.g. under ``torch.multiprocessing.spawn``); its leader is its lowest global
rank, whatever ``LOCAL_RANK`` says. The leader's process removes the directory at exit.
"""

from __future__ import annotations

import os
import pickle
import socket
import warnings
from pathlib import Path
from typing import Any

import torch.distributed as dist

from radiobject.errors import UnsafePathError
from radiobject.ml.cache import SharedMemoryCache

__all__ = ["node_key", "node_shared_cache"]


def node_key() -> str:
    """This process's node: ``"<host name>|<GROUP_RANK>"`` (``GROUP_RANK`` empty outside torchrun)."""
    return f"{socket.gethostname()}|{os.environ.get('GROUP_RANK', '')}"


def _gather(value: Any, group: Any) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, value, group=group)
    return out


def node_shared_cache(
    max_bytes: int = 2 << 30,
    *,
    group: Any = None,
    root: str | os.PathLike[str] | None = None,
) -> SharedMemoryCache:
    """The node's :class:`~radiobject.ml.cache.SharedMemoryCache` (collective: every rank of ``group`` calls it).

    Args:
        max_bytes: the node's byte budget (all its ranks and workers together).
        group: the process group (default: the world).
        root: the tmpfs mount (default ``/dev/shm``, see ``SharedMemoryCache``).

    Without an initialised process group, or in a world of one: a private cache of this process.
    When a node's leader cannot create the cache (e.g. ``max_bytes`` above the free space of
    ``/dev/shm``) every rank raises its exception, so that no rank waits for the others forever.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return SharedMemoryCache(max_bytes, root=root)
    me = dist.get_rank(group)
    keys = _gather(node_key(), group)
    leader = min(r for r, k in enumerate(keys) if k == keys[me])
    cache: SharedMemoryCache | None = None
    own: Exception | None = None
    made: tuple[str, str | None, Exception | None] | None = None
    if me == leader:
        try:
            cache = SharedMemoryCache(max_bytes, root=root)  # generated name: removed when this process exits
            made = (keys[me], str(cache.path), None)
        except Exception as exc:  # noqa: BLE001 - handed to every rank, then raised everywhere
            own, made = exc, (keys[me], None, _picklable(exc))
    results = _gather(made, group)
    if own is not None:
        raise own
    for r, result in enumerate(results):
        if result is not None and result[2] is not None:
            failure = result[2]
            failure.add_note(f"raised by rank {r}, which creates the shared-memory cache of node {result[0]!r}")
            raise failure
    if cache is not None:
        return cache
    path = results[leader][1]
    return _join(Path(path), max_bytes, leader, keys[me], root)


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any pickling failure: send its text instead
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _join(path: Path, max_bytes: int, leader: int, key: str, root: str | os.PathLike[str] | None) -> SharedMemoryCache:
    reason = f"{path} does not exist here (rank {leader} is on another machine than its node key {key!r} says)"
    if path.is_dir():
        try:
            return SharedMemoryCache(max_bytes, path.name, root=path.parent, cleanup=False)
        except UnsafePathError as exc:
            reason = str(exc)
    warnings.warn(
        f"node_shared_cache: not joining the node's shared-memory cache ({reason}); using one of this process",
        RuntimeWarning,
        stacklevel=3,
    )
    return SharedMemoryCache(max_bytes, root=root)
