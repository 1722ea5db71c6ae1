"""The cache-aware reads of ``VolumeReader`` (a mixin): regions through chunk caches or whole cached volumes.

Reads go through the cache at the granularity of the volume's storage chunks: a region is
assembled from the cached chunks it touches, and the missing ones are read from the store in one
chunk-aligned read (see :mod:`radiobject.ml.cache.chunks`). When the reader's whole decoded cohort
fits the cache's budget, whole volumes are cached instead (one lookup and one copy per patch),
until one of them is evicted (then chunks, for good, in that process). Without a cache only the
chunks a region touches are decoded, straight into the caller's buffer.

An in-memory cache on a Zarr store whose cohort does not fit it holds its chunks in tensorstore's
decoded-chunk pool instead, grown to the cache's budget for this process (``_pooled``): an LRU of
decoded chunks that assembles a patch in C++ on tensorstore's threads. Measured on random 96³
patches (docs/benchmarks.md): 1.13x no cache at 1/4 of the cohort and 1.41x at 1/2, where the
same budget in Python chunk entries gave 0.96-1.03x (64 lookups and short copies per patch cost
what they save). Shared-memory and disk caches (shared by processes) and TileDB stores keep chunk
entries.

Bounded by the memory this process may still use (``ml.cache.limits.memory_headroom``: address
space limit, memory cgroup, RAM): whole volumes are cached only when they fit it (the cohort for an
in-memory cache, one volume for a shared / disk cache; else chunks, with a ``CacheMemoryWarning``),
the chunk pool is grown to at most half of it, and a read larger than it (a whole volume bigger
than the memory left) is an ``OutputTooLargeError`` naming the subject before anything is
allocated, never the OOM killer.

Every read takes its data from :meth:`_source`: the volume itself, or a read the prefetch window
(:mod:`radiobject.ml._reader_prefetch`) started ahead for this very region, so the cache sees the
same lookups, hits and admissions with or without prefetch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from radiobject.errors import OutputTooLargeError
from radiobject.ml.cache import InMemoryCache, NoCache, cache_key, limits
from radiobject.ml.cache import chunks as chunk_cache
from radiobject.ml.cache.chunks import ChunkSource, chunk_key_prefix, read_chunked, read_whole, whole_key
from radiobject.ml.regions import Region
from radiobject.storage import zarr_backend

if TYPE_CHECKING:
    from radiobject.ml.cache import Cache
    from radiobject.model.volume import Volume
    from radiobject.storage.location import StoreLocation

__all__ = ["LARGE_READ_BYTES"]

#: Reads of at least this many bytes are checked against the memory this process may still use.
LARGE_READ_BYTES = 64 << 20


class CacheReads:
    """Mixin of ``VolumeReader``: ``read_raw`` and the per-patch reads through the reader's cache."""

    if TYPE_CHECKING:  # provided by VolumeReader
        location: StoreLocation
        modalities: tuple[str, ...]
        label: str | None
        subject_ids: tuple[str, ...]
        obs_ids: tuple[tuple[str, ...], ...]
        shapes: tuple[tuple[int, ...], ...]
        cache: Cache

        def _local(self) -> dict[str, Any]: ...

        def volume(self, index: int, collection: str) -> Volume: ...

        def _source(self, index: int, collection: str, spatial: Region) -> ChunkSource: ...

    def read_raw(self, index: int, collection: str, region: Region | None = None) -> np.ndarray:
        """A region (spatial slices; trailing axes whole) of one volume, stored dtype, through the cache.

        With a cache, the region is assembled from the volume's cached chunks (decoded once per
        process, or once per node for shared-memory / disk caches); missing chunks are read in one
        chunk-aligned read and offered to the cache (whole volumes instead while this reader's
        decoded cohort fits the cache's budget). Without one, only the chunks the region touches
        are read.
        """
        vol = self.volume(index, collection)
        if region is None:
            region = tuple(slice(0, s) for s in vol.shape[:3])
        spatial = tuple(
            slice(0 if r.start is None else int(r.start), n if r.stop is None else int(r.stop))
            for r, n in zip(tuple(region)[:3], vol.shape[:3], strict=True)
        )
        out_shape = tuple(r.stop - r.start for r in spatial) + vol.shape[3:]
        self._check_fits(index, collection, int(np.prod(out_shape, dtype=np.int64)) * vol.dtype.itemsize)
        if not isinstance(self.cache, NoCache) and self._whole_volumes():
            out = np.empty(out_shape, dtype=vol.dtype)
            self._read_whole(index, collection, spatial, out)
            return out
        source = self._source(index, collection, spatial)
        policy = self._local()["policy"]
        if self._uncached() or not policy.use(self.cache):
            return source.read(spatial + (slice(None),) * (vol.ndim - 3))
        out = np.empty(out_shape, dtype=vol.dtype)
        return read_chunked(source, self.cache, self._chunk_prefix(index, collection), spatial, out, policy=policy)

    def _read_into(self, index: int, collection: str, src: Region, target: np.ndarray) -> None:
        """``target`` ``(n, *region)``: the region of one volume, channels first, converted to its dtype."""
        vol = self.volume(index, collection)
        if vol.ndim in (3, 4) and not isinstance(self.cache, NoCache) and self._whole_volumes():
            self._read_whole(
                index, collection, tuple(src)[:3], target[0] if vol.ndim == 3 else np.moveaxis(target, 0, -1)
            )
            return
        if vol.ndim not in (3, 4) and not isinstance(self.cache, NoCache):
            block = self.read_raw(index, collection, src)
        else:
            source = self._source(index, collection, tuple(src)[:3])
            policy = self._local()["policy"]
            if self._uncached() or not policy.use(self.cache):  # no cache (or the pool), or one that does not pay
                if vol.ndim == 3 and target[0].flags.c_contiguous and target.dtype == vol.dtype:
                    source.read(tuple(src), out=target[0])
                    return
                block = source.read(tuple(src) + (slice(None),) * (vol.ndim - 3))
            else:  # assembled from cached chunks straight into the batch buffer
                read_chunked(
                    source,
                    self.cache,
                    self._chunk_prefix(index, collection),
                    tuple(src)[:3],
                    target[0] if vol.ndim == 3 else np.moveaxis(target, 0, -1),
                    policy=policy,
                )
                return
        if vol.ndim == 3:
            np.copyto(target[0], block, casting="unsafe")
        else:
            np.copyto(target, np.moveaxis(block.reshape(*block.shape[:3], -1), -1, 0), casting="unsafe")

    def _uncached(self) -> bool:
        """Whether chunk reads skip this reader's cache object: no cache, or the pool (``_pooled``)."""
        return isinstance(self.cache, NoCache) or self._pooled()

    def _pooled(self) -> bool:
        """Whether this process caches chunks in tensorstore's pool: an in-memory cache, a cohort
        that does not fit it (see ``_whole_volumes``), Zarr volumes read through tensorstore. The
        first time, the process pool grows to the cache's budget (volumes reopened to use it)."""
        if not isinstance(self.cache, InMemoryCache) or not zarr_backend.tensorstore_usable():
            return False
        local = self._local()
        pooled = local.get("pooled")
        if pooled is None:
            if self._whole_volumes():
                return False  # decided again if whole volumes stop fitting
            names = [*self.modalities, self.label] if self.label else list(self.modalities)
            pooled = all(self.volume(0, name).info.backend == "zarr" for name in names)
            if pooled and zarr_backend.reserve_chunk_pool(self._pool_bytes()):
                local["volumes"].clear()  # handles opened from now on share the grown pool
            local["pooled"] = pooled
        return bool(pooled)

    def _chunk_prefix(self, index: int, collection: str) -> str:
        """Cache-key prefix of the chunks of one volume (its version included: never served stale)."""
        prefixes = self._local()["prefixes"]
        got = prefixes.get((index, collection))
        if got is None:
            vol = self.volume(index, collection)
            key = cache_key(
                self.location.uri, collection, self.obs_ids[index][self._col(collection)], version=vol.info.version
            )
            got = prefixes[(index, collection)] = chunk_key_prefix(key, vol.chunks)
        return got

    def _whole_volumes(self) -> bool:
        """Whether this process caches whole volumes: the decoded cohort fits the cache's budget.

        Decided on the first read; turns ``False`` for good once one of the volumes this process
        stored was evicted or not kept (see :meth:`_read_whole`).
        """
        local = self._local()
        whole = local["whole"]
        if whole is None:
            cohort, largest = self.cohort_bytes()
            whole = 0 < cohort <= chunk_cache.WHOLE_VOLUMES_UP_TO * self.cache.max_bytes
            local["whole"] = whole = whole and self._whole_fits(cohort, largest)
        return bool(whole)

    def cohort_bytes(self) -> tuple[int, int]:
        """Decoded bytes of this reader's cohort (every collection it reads) and of its largest subject."""
        names = [*self.modalities, self.label] if self.label else list(self.modalities)
        per_voxel = 0
        for name in names:  # dtype and trailing axes per collection, from its first volume
            vol = self.volume(0, name)
            per_voxel += vol.dtype.itemsize * int(np.prod(vol.shape[3:], dtype=np.int64))
        sizes = [int(np.prod(s, dtype=np.int64)) * per_voxel for s in self.shapes]
        return sum(sizes), max(sizes, default=0)

    def _whole_fits(self, cohort: int, largest: int) -> bool:
        """Whether whole volumes fit the memory this process may still take (``memory_headroom``):
        an in-memory cache then holds the whole cohort (at most half of it), a shared or disk cache
        decodes one volume at a time per reading thread (at most a quarter). Otherwise patches are
        read by chunks (never a volume decoded whole), with a ``CacheMemoryWarning``."""
        headroom = limits.memory_headroom()
        if headroom is None:
            return True
        held, share = (cohort, 2) if isinstance(self.cache, InMemoryCache) else (largest, 4)
        if held * share <= headroom:
            return True
        what = f"the cohort ({cohort / 2**20:.0f} MiB)" if share == 2 else f"a volume ({largest / 2**20:.0f} MiB)"
        limits.warn(
            f"{type(self.cache).__name__} over {self.location.uri}: {what} does not fit the "
            f"{headroom / 2**20:.0f} MiB this process may still use (memory limit / cgroup / RAM); "
            "caching chunks instead of whole volumes",
        )
        return False

    def _pool_bytes(self) -> int:
        """The decoded-chunk pool for an in-memory cache: its budget, at most half the memory this
        process may still use (a ``CacheMemoryWarning`` says when it was cut)."""
        budget = self.cache.max_bytes
        headroom = limits.memory_headroom()
        if headroom is not None and budget > headroom // 2:
            limits.warn(
                f"InMemoryCache budget {budget / 2**20:.0f} MiB exceeds half the {headroom / 2**20:.0f} MiB this "
                f"process may still use; its chunk pool is cut to {headroom // 2 / 2**20:.0f} MiB",
            )
            return headroom // 2
        return budget

    def _check_fits(self, index: int, collection: str, nbytes: int) -> None:
        """``OutputTooLargeError`` before a read of ``nbytes`` that the memory this process may still
        use cannot hold (reads under :data:`LARGE_READ_BYTES` are not checked: no ``/proc`` reads
        per patch)."""
        if nbytes < LARGE_READ_BYTES:
            return
        headroom = limits.memory_headroom()
        if headroom is not None and nbytes > headroom:
            sid = self.subject_ids[index]
            raise OutputTooLargeError(
                self.volume(index, collection).uri,
                f"reading {nbytes / 2**20:.1f} MiB of subject {sid!r} (collection {collection!r}, store "
                f"{self.location.uri}) needs more than the {headroom / 2**20:.1f} MiB this process may still use "
                "(memory limit / cgroup / RAM); read patches (patch_size=...) instead of whole volumes",
            )

    def _read_whole(self, index: int, collection: str, spatial: Region, out: np.ndarray) -> None:
        """Fill ``out`` (``(*region, *trailing)``) from the cached whole volume (read and stored on a miss)."""
        local = self._local()
        keys = local["whole_keys"]
        key = keys.get((index, collection))
        if key is None:
            vol = self.volume(index, collection)
            key = keys[(index, collection)] = whole_key(
                cache_key(
                    self.location.uri, collection, self.obs_ids[index][self._col(collection)], version=vol.info.version
                )
            )
        vol = self.volume(index, collection)
        began = next(local["ticks"])  # atomic: threads of one process share this state
        got = read_whole(vol, self.cache, key, spatial + (slice(None),) * (vol.ndim - 3), out)
        if got == "dropped":
            local["whole"] = False  # not kept: the cohort does not fit after all
        elif got == "stored":
            if local["stored"].get(key, began + 1) < began:  # stored before this read began: evicted since
                local["whole"] = False
            local["stored"][key] = next(local["ticks"])

    def _col(self, collection: str) -> int:
        names = [*self.modalities, self.label] if self.label else list(self.modalities)
        return names.index(collection)
