"""Bounded prefetch of patches: the sampler starts the reads of the next samples while this one is built.

The sampler (:class:`radiobject.ml.sampler.RadiSampler`) knows the order of the epoch, and a patch
dataset's origin is a pure function of ``(seed, epoch, index)``, so while sample ``j`` is handed
out the reads of samples ``j .. j + k`` can already be in flight (:class:`Lookahead`). Zarr reads
run on tensorstore's own threads (I/O and decode without the GIL), so even a 0-worker loader
overlaps them with the training step; other engines (TileDB, zarr-python after ``fork``) read on a
small thread pool of the process.

Correctness first:

* an entry of the window is keyed by (subject, clipped patch region) and records the volume's
  version: a read is only ever used for the very (subject, region, version) it was started for,
  and the consumer still does every cache lookup, admission and policy step itself (the prefetched
  block only stands in for the store read), so samples are identical with and without prefetch;
* a damaged chunk raises the typed ``CorruptDataError`` when the read is consumed (``result()``),
  exactly where the synchronous read would have raised; a failure while *planning* a read is
  dropped (the sample then reads synchronously and raises there);
* the window holds at most ``k`` patches (memory: ``k`` patch buffers per collection); a new pass
  of the sampler (a new epoch, a resume) cancels everything in flight;
* reads are started only in a process that reads patches through this reader (not in the main
  process of a loader with worker processes, whose samples are read by the workers).

With a cache, the read started ahead covers the patch and the chunks the cache did not hold when it
was planned (:meth:`Cache.holds`, not a use); if the consumer needs a box outside it (a chunk was
evicted meanwhile) it reads that box from the store, as without prefetch. Whole-volume caching
(a cohort that fits the cache) plans nothing: after the first epoch every read is a copy from RAM.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from radiobject._os.forks import ForkSafeLock
from radiobject.ml.cache import NoCache
from radiobject.ml.cache.chunks import ChunkSource
from radiobject.ml.regions import Region, _patch_slices

if TYPE_CHECKING:
    from radiobject.ml.cache import Cache
    from radiobject.model.volume import Volume
    from radiobject.storage.base import ReadFuture

__all__ = ["DEFAULT_PREFETCH_PATCHES", "Lookahead", "PrefetchReads", "PrefetchedSource", "patch_request"]

#: Patches read ahead when nothing else is configured (the loader factories use 2 x ``batch_size``).
DEFAULT_PREFETCH_PATCHES = 4
#: Threads reading ahead for engines without asynchronous reads (TileDB; zarr-python after fork).
PREFETCH_THREADS = 2
#: An entry started more than this many windows before the sample now handed out is stale.
STALE_WINDOWS = 4

_Key = tuple[int, tuple[tuple[int, int], ...]]
_CREATE = ForkSafeLock()  # creating a process's window (loader threads may race to it)


class PrefetchedSource:
    """A volume seen through one read started ahead: reads inside its box come from that read.

    ``shape`` / ``chunks`` / ``dtype`` / ``ndim`` are the volume's; ``read(region)`` of a region
    inside the prefetched box returns (or fills ``out`` from) the prefetched block, raising the
    read's typed error if it failed; any other region is read from the volume.
    """

    __slots__ = ("_box", "_future", "volume")

    def __init__(self, volume: Volume, box: Region, future: ReadFuture) -> None:
        self.volume, self._box, self._future = volume, box, future

    @property
    def shape(self) -> tuple[int, ...]:
        return self.volume.shape

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.volume.chunks

    @property
    def dtype(self) -> np.dtype:
        return self.volume.dtype

    @property
    def ndim(self) -> int:
        return self.volume.ndim

    def read(self, region: Region, out: np.ndarray | None = None) -> np.ndarray:
        """``region`` (spatial slices, trailing axes whole) from the prefetched block or the volume."""
        spatial = tuple(region)[:3]
        box = self._box
        whole_trailing = all(r == slice(None) for r in tuple(region)[3:])  # the block holds every channel
        if (
            len(spatial) == 3
            and whole_trailing
            and all(
                r.start is not None and r.stop is not None and b.start <= r.start and r.stop <= b.stop
                for r, b in zip(spatial, box, strict=True)
            )
        ):
            block = self._future.result()  # the typed error of a damaged chunk surfaces here
            view = block[tuple(slice(r.start - b.start, r.stop - b.start) for r, b in zip(spatial, box, strict=True))]
            if out is None:
                return view
            np.copyto(out, view, casting="unsafe")
            return out
        self._future.cancel()
        return self.volume.read(region, out)


class _Window:
    """This process's reads in flight for one reader: at most ``capacity`` patches, oldest first."""

    def __init__(self) -> None:
        self.lock = ForkSafeLock()
        #: (subject, region) -> {"reads": {collection: (box, future, version)}, "ordinal", "touched"}
        self.entries: OrderedDict[_Key, dict[str, Any]] = OrderedDict()
        self.stats = {"started": 0, "used": 0, "dropped": 0}

    def clear(self) -> None:
        with self.lock:
            for entry in self.entries.values():
                for _, future, _ in entry["reads"].values():
                    future.cancel()
                self.stats["dropped"] += len(entry["reads"])
            self.entries.clear()


def _plan_box(cache: Cache, prefix: str, src: Region, shape: Sequence[int], chunks: Sequence[int]) -> Region | None:
    """The box to read ahead for ``src`` through ``cache``: ``src`` and the chunks it does not hold (None: all held)."""
    ranges = [range(r.start // c, (r.stop - 1) // c + 1) for r, c in zip(src, chunks, strict=True)]
    missing = [idx for idx in itertools.product(*ranges) if not cache.holds(f"{prefix}{idx[0]}.{idx[1]}.{idx[2]}")]
    if not missing:
        return None
    lo = [min(m[a] for m in missing) * chunks[a] for a in range(3)]
    hi = [min((max(m[a] for m in missing) + 1) * chunks[a], shape[a]) for a in range(3)]
    return tuple(slice(min(lo[a], src[a].start), max(hi[a], src[a].stop)) for a in range(3))


class PrefetchReads:
    """Mixin of ``VolumeReader``: the per-process prefetch window (see the module docstring)."""

    if TYPE_CHECKING:  # provided by VolumeReader / CacheReads
        modalities: tuple[str, ...]
        label: str | None
        shapes: tuple[tuple[int, ...], ...]
        cache: Cache

        def _local(self) -> dict[str, Any]: ...

        def volume(self, index: int, collection: str) -> Volume: ...

        def _whole_volumes(self) -> bool: ...

        def _pooled(self) -> bool: ...

        def _chunk_prefix(self, index: int, collection: str) -> str: ...

    def _window(self) -> _Window:
        local = self._local()
        window = local.get("prefetch")
        if window is None:
            with _CREATE:
                window = local.get("prefetch")
                if window is None:
                    window = local["prefetch"] = _Window()
        return window

    def _pool(self) -> ThreadPoolExecutor:
        local = self._local()
        with self._window().lock:
            pool = local.get("prefetch_pool")
            if pool is None:
                pool = local["prefetch_pool"] = ThreadPoolExecutor(PREFETCH_THREADS, thread_name_prefix="radi-prefetch")
        return pool

    def reads_here(self) -> bool:
        """Whether this process has read patches or regions through this reader (prefetch pays here)."""
        return bool(self._local().get("read_here"))

    def prefetch_stats(self) -> dict[str, int]:
        """This process's counts: reads ``started`` ahead, ``used`` by a sample, ``dropped`` unused; ``held`` now."""
        window = self._window()
        with window.lock:
            return {**window.stats, "held": len(window.entries)}

    def cancel_prefetch(self) -> None:
        """Drops every read in flight in this process (a new epoch or pass begins)."""
        self._window().clear()

    def prefetch_patch(
        self,
        index: int,
        origin: Sequence[int] | np.ndarray,
        patch_size: Sequence[int],
        *,
        with_label: bool = True,
        ordinal: int = 0,
        now: int = 0,
        capacity: int = DEFAULT_PREFETCH_PATCHES,
    ) -> bool:
        """Starts the reads of one patch (as ``read_patch_into`` will do them); ``False`` when the window is full.

        ``ordinal`` is the sample's position in the sampler's pass and ``now`` the position handed
        out now: with ``capacity`` patches in flight, the oldest entry is dropped only once it is
        ``STALE_WINDOWS`` windows behind (its sample was never read). Never raises for the data: a
        read that cannot be planned is left to the synchronous path.
        """
        src, _, _ = _patch_slices(origin, patch_size, self.shapes[index])
        if any(r.stop <= r.start for r in src):
            return True
        key: _Key = (int(index), tuple((r.start, r.stop) for r in src))
        window = self._window()
        with window.lock:
            if key in window.entries:
                return True
            if len(window.entries) >= capacity:
                oldest = next(iter(window.entries.values()))
                if not oldest["touched"] and oldest["ordinal"] >= now - STALE_WINDOWS * capacity:
                    return False
                _, old = window.entries.popitem(last=False)
                for _, future, _ in old["reads"].values():
                    future.cancel()
                window.stats["dropped"] += len(old["reads"])
        names = [*self.modalities, self.label] if (with_label and self.label) else list(self.modalities)
        reads: dict[str, tuple[Region, ReadFuture, str]] = {}
        try:
            cached = not isinstance(self.cache, NoCache)
            if cached and self._whole_volumes():
                return True  # whole volumes: nothing to plan per patch
            cached = cached and not self._pooled()  # tensorstore's pool: read ahead like no cache
            for name in names:
                vol = self.volume(index, name)
                if vol.ndim not in (3, 4):
                    continue
                box: Region | None = src
                if cached:
                    box = _plan_box(self.cache, self._chunk_prefix(index, name), src, vol.shape, vol.chunks)
                if box is None:
                    continue  # every chunk cached: nothing to read
                # Zarr: tensorstore's threads; other engines: this process's small pool
                future = vol.read_async(box + (slice(None),) * (vol.ndim - 3), executor=self._pool())
                reads[name] = (box, future, vol.info.version)
        except Exception:  # noqa: BLE001 - planning only: the sample reads synchronously (and raises there)
            for _, future, _ in reads.values():
                future.cancel()
            return True
        if not reads:
            return True
        with window.lock:
            window.entries[key] = {"reads": reads, "ordinal": int(ordinal), "touched": False}
            window.stats["started"] += len(reads)
        return True

    def _source(self, index: int, collection: str, spatial: Region) -> ChunkSource:
        """Where the read of ``spatial`` of one volume takes its data: a read started ahead, or the volume."""
        local = self._local()
        local["read_here"] = True
        vol = self.volume(index, collection)
        window = local.get("prefetch")
        if window is None or not window.entries:
            return vol
        key: _Key = (int(index), tuple((int(r.start), int(r.stop)) for r in spatial))
        with window.lock:
            entry = window.entries.get(key)
            if entry is None:
                return vol
            got = entry["reads"].pop(collection, None)
            entry["touched"] = True
            if not entry["reads"]:
                del window.entries[key]
            if got is None:
                return vol
            box, future, version = got
            if version != vol.info.version:  # never a read of another version of the volume
                future.cancel()
                window.stats["dropped"] += 1
                return vol
            window.stats["used"] += 1
        return PrefetchedSource(vol, box, future)


def patch_request(dataset: Any, epoch: int, index: int) -> tuple[int, np.ndarray, tuple[int, ...], bool] | None:
    """``(subject, origin, patch_size, with_label)`` sample ``index`` of ``epoch`` will read, or ``None``.

    Patch datasets (an ``origin(index, epoch)`` method, as ``PatchDataset``) and grid datasets
    (``origins`` per subject and ``patches_of``, as ``GridPatchDataset``); other datasets
    (volumes, slices) are not prefetched. The epoch is the dataset's ``fixed_epoch`` when set.
    """
    reader = getattr(dataset, "reader", None)
    patch_size = getattr(dataset, "patch_size", None)
    if reader is None or patch_size is None:
        return None
    fixed = getattr(dataset, "fixed_epoch", None)
    epoch = fixed if fixed is not None else epoch
    subject = int(dataset.subject_of(index))
    if callable(getattr(dataset, "origin", None)):
        origin = np.asarray(dataset.origin(index, epoch), dtype=np.int64)
        return subject, origin, tuple(patch_size), reader.label is not None
    if hasattr(dataset, "origins") and hasattr(dataset, "patches_of"):
        origin = np.asarray(dataset.origins[subject][index - dataset.patches_of(subject).start], dtype=np.int64)
        with_label = bool(getattr(dataset, "with_label", False)) and reader.label is not None
        return subject, origin, tuple(patch_size), with_label
    return None


class Lookahead:
    """The sampler's side: while position ``j`` of a pass is handed out, positions up to ``j + k`` are in flight."""

    def __init__(self, dataset: Any, epoch: int, stream: Sequence[int], k: int) -> None:
        self.dataset, self.epoch, self.stream, self.k = dataset, int(epoch), stream, int(k)
        self.reader: PrefetchReads = dataset.reader
        self.cursor = 0
        self.reader.cancel_prefetch()  # a new pass: nothing of the last one is kept

    @classmethod
    def start(cls, dataset: Any, epoch: int, stream: Sequence[int], k: int) -> Lookahead | None:
        """A lookahead over ``stream`` (sample indices of this pass), or ``None`` when there is nothing to prefetch."""
        reader = getattr(dataset, "reader", None)
        if k <= 0 or not isinstance(reader, PrefetchReads) or getattr(dataset, "patch_size", None) is None:
            return None
        return cls(dataset, epoch, stream, k)

    def step(self, j: int) -> None:
        """Position ``j`` is being handed out: start what fits of ``j .. j + k``."""
        reader = self.reader
        if not reader.reads_here():
            return
        self.cursor = max(self.cursor, j)
        stop = min(len(self.stream), j + self.k + 1)
        while self.cursor < stop:
            try:
                req = patch_request(self.dataset, self.epoch, self.stream[self.cursor])
            except Exception:  # noqa: BLE001 - planning only: the sample raises when it is read
                req = None
            if req is not None:
                subject, origin, size, with_label = req
                ok = reader.prefetch_patch(
                    subject, origin, size, with_label=with_label, ordinal=self.cursor, now=j, capacity=self.k
                )
                if not ok:
                    return
            self.cursor += 1
