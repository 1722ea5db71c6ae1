"""``RadiDataLoader``: a ``DataLoader`` with resumable progress, optional threads and device delivery.

Built by the factories of :mod:`radiobject.ml.loaders` (:func:`make_loader`). ``state_dict()`` /
``load_state_dict()`` save and restore the epoch position through the sampler
(:mod:`radiobject.ml.partition`'s resume model), so Lightning's own checkpointing (which calls them on
stateful loaders) resumes exactly mid-epoch.

**Worker processes.** Without an explicit ``multiprocessing_context`` the loader picks the start
method when its workers start (:func:`default_context`: ``fork`` unless
this process has used tensorstore and the dataset's reads would use it, then ``forkserver``).
Process workers are persistent by default, so they start once per loader, not once per epoch.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader

from radiobject.ml import _slots
from radiobject.ml._epochs import EpochStream
from radiobject.ml._pace import Pace
from radiobject.ml._start_method import FORKSERVER_PRELOAD, default_context, reads_fork_safe
from radiobject.ml._worker_errors import exit_codes, stop_workers, stop_workers_with, typed_sigchld, worker_error
from radiobject.ml._worker_mode import auto_worker_mode
from radiobject.ml.collate import collate as default_collate_fn
from radiobject.ml.collate import pad_collate, to_device
from radiobject.ml.datasets import RadiDataset
from radiobject.ml.errors import LoaderConfigError, WorkerFailure
from radiobject.ml.sampler import RadiSampler
from radiobject.ml.threads import make_worker_init_fn, worker_share

__all__ = [
    "FORKSERVER_PRELOAD",
    "Pace",
    "RadiDataLoader",
    "default_context",
    "make_loader",
    "to_device",
    "worker_error",
]


def _method(context: Any) -> str:
    """The start method's name of a ``multiprocessing_context`` (a name or a context object)."""
    if context is None:
        return "the default start method's"
    return str(getattr(context, "_name", None) or context)


class RadiDataLoader(DataLoader):
    """A ``DataLoader`` with resumable progress and optional device delivery.

    ``state_dict()`` records the epoch position (batches delivered so far); a new loader given it
    through ``load_state_dict()`` continues with exactly the samples not yet delivered (also on
    another world size; see ``RadiSampler``). ``device`` (set by the factories) moves each batch
    with ``non_blocking`` copies; pinned memory makes those copies asynchronous on CUDA.
    """

    device: torch.device | None = None
    #: ``worker_mode="threads"``: batches are built by this many threads of this process (no pickling
    #: of batches between processes; reads and copies release the GIL). 0 = the DataLoader's own path.
    threads: int = 0
    #: Optional: batches of the current epoch the model has consumed in total (set by the Lightning
    #: DataModule, whose prefetching runs ahead of training); ``None`` = batches delivered here.
    steps_fn: Callable[[], int | None] | None = None
    #: Process workers without an explicit context: the start method is chosen when they start
    #: (:func:`default_context`).
    auto_context: bool = False
    #: Persistent process workers build the next epoch's first batches while this one drains
    #: (:mod:`radiobject.ml._epochs`; the same batches either way). ``False``: PyTorch's epoch start.
    run_ahead: bool = True
    _steps: int = 0

    def _runs_ahead(self) -> bool:
        return (
            self.run_ahead
            and self.num_workers > 0
            and self.persistent_workers
            and isinstance(self.sampler, RadiSampler)
            and type(self.batch_sampler) is BatchSampler
        )

    @property
    def _index_sampler(self) -> Any:  # the worker iterator's indices: the epoch stream when running ahead
        stream = self.__dict__.get("_epoch_stream")
        return stream if stream is not None and self._runs_ahead() else DataLoader._index_sampler.fget(self)  # type: ignore[attr-defined]

    def _worker_passes(self) -> Iterator[Any]:
        """This pass's batches from persistent workers that may have begun them during the last pass."""
        sampler = self.sampler
        assert isinstance(sampler, RadiSampler)  # noqa: S101 - checked by _runs_ahead
        stream = self.__dict__.get("_epoch_stream")
        if stream is None:
            length = self.batch_sampler.__len__  # type: ignore[union-attr]  # no closure: no reference cycle
            stream = self._epoch_stream = EpochStream(self.batch_size or 1, self.drop_last, sampler.fresh_pass, length)
        epoch, indices = sampler.begin_pass()
        if getattr(self._iterator, "_index_sampler", stream) is not stream:  # started without run-ahead
            self._drop_workers()
        it = self._iterator
        if it is None or not stream.follows(epoch, indices):
            stream.restart(epoch, indices)
            if it is None:
                it = self._iterator = self._get_iterator()
            else:
                it._reset(self)
        count = stream.batches(len(indices))
        stream.delivered = count == 0
        for k in range(count):
            batch = next(it)
            stream.delivered = k == count - 1  # on receipt: Lightning never asks past the last batch
            yield batch

    def _get_iterator(self) -> Any:
        if self.num_workers > 0 and self.auto_context:
            context = default_context(self.dataset)
            if context is not None:  # decided for good: the dataset is not pickled again each epoch
                self.multiprocessing_context = context
                self.auto_context = False
        it = super()._get_iterator()
        if self.num_workers > 0:
            typed_sigchld()
            if self.persistent_workers:  # the loader holds the iterator (others are freed with their loop)
                stop_workers_with(self, it)
        return it

    # the ignore below: torch types DataLoader.__iter__ as returning its own iterator class
    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self._steps = 0
        device = self.device
        sampler = self.sampler if isinstance(self.sampler, RadiSampler) else None
        pace = self.__dict__.setdefault("_pace", Pace())  # kept across epochs: so is the consumer
        pace.mark = pace.clock()
        source: Any = None
        try:
            it = self.__dict__.get("_iterator")
            if it is not None and any(not w.is_alive() for w in getattr(it, "_workers", ())):
                self._drop_workers()  # a worker died between passes (torch's SIGCHLD error raised elsewhere)
            if self.threads > 0 and self.num_workers == 0:
                source = self._threaded()
            else:
                if not self._runs_ahead() and isinstance(getattr(self._iterator, "_index_sampler", None), EpochStream):
                    self._drop_workers()  # run_ahead turned off: the workers' iterator follows the epoch stream
                source = self._worker_passes() if self._runs_ahead() else super().__iter__()
            for batch in source:
                if isinstance(batch, WorkerFailure):  # an error inside a worker process, sent intact
                    raise batch.error
                self._steps += 1
                if sampler is not None:
                    sampler.overlap = pace.arrived()
                yield to_device(batch, device) if device is not None else batch
                pace.asked()
            if self.num_workers > 0 and not self.persistent_workers:  # its workers ended with the pass
                _slots.forget([w.pid for w in getattr(source, "_workers", ())])
        except RuntimeError as exc:
            error = worker_error(
                exc, self._where(), exit_codes(self.__dict__.get("_iterator") or locals().get("source"))
            )
            if error is None:
                raise
            self._drop_workers()
            raise error from exc
        except pickle.PicklingError as exc:
            raise self._unpicklable(exc) from exc
        except (AttributeError, TypeError) as exc:
            if "pickle" not in str(exc):
                raise
            raise self._unpicklable(exc) from exc

    def _where(self) -> str:
        reader = getattr(self.dataset, "reader", None)
        return f"store {reader.location.uri}" if reader is not None else "this loader"

    def _unpicklable(self, exc: BaseException) -> LoaderConfigError:
        return LoaderConfigError(
            f"{self._where()}: the dataset cannot be sent to {_method(self.multiprocessing_context)} worker "
            f"processes ({type(exc).__name__}: {exc}); make the transforms picklable (no lambdas or local "
            "functions), or use worker_mode='threads' / multiprocessing_context='fork'"
        )

    def _drop_workers(self) -> None:
        """After a worker died or timed out: shut the rest down; the next pass starts new workers."""
        it = getattr(self, "_iterator", None)
        if it is not None:
            try:
                stop_workers(it)
            except Exception:  # noqa: BLE001 - best effort: the workers are broken already
                pass
            self._iterator = None

    def _threaded(self) -> Iterator[Any]:
        """Batches in sampler order, built ahead by ``threads`` threads (at most ``2 * threads`` in flight)."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        dataset, collate_fn = self.dataset, self.collate_fn
        getitems = getattr(dataset, "__getitems__", None)

        def load(indices: list[Any]) -> Any:
            batch = collate_fn(getitems(indices) if getitems else [dataset[i] for i in indices])
            if self.pin_memory and torch.cuda.is_available():
                from torch.utils.data._utils.pin_memory import pin_memory

                batch = pin_memory(batch)
            return batch

        # the ignore below: batch_sampler is always set here (torch types it Optional)
        batches = iter(self.batch_sampler)  # type: ignore[arg-type]
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="radi-loader") as pool:
            pending = deque(pool.submit(load, b) for _, b in zip(range(2 * self.threads), batches, strict=False))
            try:
                while pending:
                    batch = pending.popleft().result()
                    nxt = next(batches, None)
                    if nxt is not None:
                        pending.append(pool.submit(load, nxt))
                    yield batch
            finally:
                for fut in pending:
                    fut.cancel()

    def state_dict(self) -> dict[str, Any]:
        """The sampler's resume point after the batches delivered in the current epoch."""
        sampler = self.sampler
        if not isinstance(sampler, RadiSampler):
            raise TypeError("state_dict needs a loader built by ml.loaders (a RadiSampler)")
        bs = self.batch_size or 1
        absolute = self.steps_fn() if self.steps_fn is not None else None
        if absolute is not None:
            return sampler.state_dict(steps=absolute, batch_size=bs, absolute=True)
        return sampler.state_dict(steps=self._steps, batch_size=bs)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()`` (possibly saved with another world size)."""
        sampler = self.sampler
        if not isinstance(sampler, RadiSampler):
            raise TypeError("load_state_dict needs a loader built by ml.loaders (a RadiSampler)")
        sampler.load_state_dict(state)
        if isinstance(self.dataset, RadiDataset):
            self.dataset.set_epoch(sampler.epoch)


def make_loader(
    dataset: RadiDataset,
    sampler: RadiSampler,
    *,
    batch_size: int,
    num_workers: int,
    pin_memory: bool | None,
    device: torch.device | str | None,
    persistent_workers: bool | None,
    prefetch_factor: int | None,
    timeout: float,
    multiprocessing_context: Any,
    drop_last: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    worker_init_fn: Callable[[int], None] | None = None,
    worker_mode: str = "auto",
    pad: bool = False,
) -> RadiDataLoader:
    """A ``RadiDataLoader`` over ``dataset`` / ``sampler`` with the settings of ``ml.config.LoaderConfig``."""
    cuda = torch.cuda.is_available()
    dev = torch.device(device) if device is not None else None
    if pin_memory is None:
        pin_memory = cuda and (dev is None or dev.type == "cuda")
    if worker_mode not in ("auto", "processes", "threads"):
        raise ValueError(f"worker_mode must be 'auto', 'processes' or 'threads', got {worker_mode!r}")
    prefetch_factor = prefetch_factor or 2
    if worker_mode == "auto":  # measured: see radiobject.ml._worker_mode
        worker_mode = (
            "processes"
            if multiprocessing_context is not None
            else auto_worker_mode(dataset, num_workers, batch_size, prefetch_factor)
        )
    threads = num_workers if worker_mode == "threads" else 0
    if threads:
        num_workers = 0
    if num_workers > 0 and int(getattr(sampler, "prefetch_patches", 0) or 0):
        # worker processes read the samples; the sampler runs in this process, which reads none:
        # a read started ahead here would never be consumed (workers rely on prefetch_factor)
        sampler.prefetch_patches = 0
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(  # persistent by default: workers start once per loader, not once per epoch
            persistent_workers=bool(persistent_workers) if persistent_workers is not None else True,
            prefetch_factor=prefetch_factor,
            timeout=timeout,
            multiprocessing_context=multiprocessing_context,
            # each worker's libraries (torch, BLAS, blosc, tensorstore) get its share of the cores
            worker_init_fn=worker_init_fn or make_worker_init_fn(worker_share(num_workers)),
        )
    if collate_fn is None:  # whole batches read straight into one buffer (see RadiDataset.__getitems__)
        dataset.batched_reads = True
        collate_fn = pad_collate if pad else default_collate_fn
    loader = RadiDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=bool(pin_memory),
        drop_last=drop_last,
        collate_fn=collate_fn,
        **kwargs,
    )
    loader.device = dev
    loader.threads = threads
    loader.auto_context = num_workers > 0 and multiprocessing_context is None
    if loader.auto_context and default_context() == "forkserver" and not reads_fork_safe(dataset):
        # the fork server's imports overlap the caller's work
        from multiprocessing import forkserver

        forkserver.ensure_running()
    return loader
