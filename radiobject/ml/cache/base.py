"""The cache interface (:class:`Cache`), the key format (:func:`cache_key`) and :class:`NoCache`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["Cache", "NoCache", "cache_key"]


def cache_key(
    store_uri: str,
    collection: str,
    obs_id: str,
    region: Sequence[slice] | None = None,
    version: str = "",
) -> str:
    """``"{store_uri}|{collection}|{obs_id}|{region}"``; region ``"full"`` or e.g. ``"0:64,0:64,5:69"``.

    ``version`` (e.g. a volume's per-write token ``Volume.info.version``) is appended as
    ``"|{version}"`` when non-empty, so a rewritten volume gets a new key and is never served stale.
    ``%`` and ``|`` inside the parts are percent-escaped so distinct inputs give distinct keys.
    """

    def esc(part: str) -> str:
        return str(part).replace("%", "%25").replace("|", "%7C")

    if region is None:
        reg = "full"
    else:
        reg = ",".join(
            f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}"
            + ("" if s.step in (None, 1) else f":{s.step}")
            for s in region
        )
    key = f"{esc(store_uri)}|{esc(collection)}|{esc(obs_id)}|{reg}"
    return f"{key}|{esc(version)}" if version else key


def _readonly(value: np.ndarray) -> np.ndarray:
    """A read-only view of ``value`` (the array itself is left writable)."""
    view = value.view()
    view.flags.writeable = False
    return view


class Cache:
    """Interface of every cache: ``get`` / ``put`` / ``get_or_load`` on string keys, numpy values."""

    #: Byte budget (0 for :class:`NoCache`).
    max_bytes: int = 0

    def get(self, key: str) -> np.ndarray | None:
        """The cached array (read-only) or ``None``."""
        raise NotImplementedError

    def put(self, key: str, value: np.ndarray) -> None:
        """Store ``value`` under ``key`` (ignored when larger than the budget). Do not modify it after."""
        raise NotImplementedError

    def get_or_load(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array, or ``load()`` stored and returned (read-only either way)."""
        hit = self.get(key)
        if hit is not None:
            return hit
        value = np.asarray(load())
        self.put(key, value)
        return _readonly(value)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def holds(self, key: str) -> bool:
        """Whether ``key`` is probably held, without counting as a use (no LRU touch, no hit/miss).

        For planning only (a prefetch deciding which chunks to read ahead): the entry may be gone
        when it is looked up. The default answers ``False`` (plan as if missing: read more).
        """
        return False

    @property
    def nbytes(self) -> int:
        """Bytes currently held (for disk caches: in this cache's directory, all processes)."""
        return 0

    def nearly_full(self) -> bool:
        """True once the cache holds about its budget (new entries then evict others)."""
        return False

    def clear(self) -> None:
        """Drop every entry."""


class NoCache(Cache):
    """Keeps nothing: every ``get_or_load`` calls the loader."""

    def get(self, key: str) -> np.ndarray | None:
        """Always ``None``."""
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        """Does nothing."""
