"""Loader factories: training, validation and inference ``DataLoader``s over a ``RadiObject``.

Each factory builds a ``VolumeReader`` (no pixel I/O), a dataset (``ml.datasets``), a
``RadiSampler`` (a ``DistributedSampler``: one rank by default, the ``torch.distributed`` world
when initialised) and a ``RadiDataLoader``: a plain ``DataLoader`` that also counts delivered
batches for ``state_dict()`` / ``load_state_dict()`` (exact mid-epoch resume) and, with
``device=``, delivers batches on that device with non-blocking copies from pinned memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from radiobject.ml.cache import Cache, CacheStrategy, make_cache
from radiobject.ml.datasets import GridPatchDataset, LoadingMode, PatchDataset, RadiDataset, SliceDataset, VolumeDataset, collate
from radiobject.ml.distributed import RadiSampler
from radiobject.ml.reader import VolumeReader
from radiobject.ml.threads import worker_init_fn as limit_worker_threads  # one thread per library per worker

__all__ = [
    "RadiDataLoader",
    "build_reader",
    "create_inference_dataloader",
    "create_training_dataloader",
    "create_validation_dataloader",
    "to_device",
    "train_steps",
]


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = True) -> Any:
    """Moves every tensor in a (nested) batch to ``device``; other values are left as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not isinstance(batch, str):
        return type(batch)(to_device(v, device, non_blocking) for v in batch) if not hasattr(batch, "_fields") \
            else type(batch)(*(to_device(v, device, non_blocking) for v in batch))
    return batch


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
    _steps: int = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self._steps = 0
        device = self.device
        source = self._threaded() if self.threads > 0 and self.num_workers == 0 else super().__iter__()
        for batch in source:
            self._steps += 1
            yield to_device(batch, device) if device is not None else batch

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

        batches = iter(self.batch_sampler)  # type: ignore[arg-type]
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="radi-loader") as pool:
            pending = deque(pool.submit(load, b) for _, b in zip(range(2 * self.threads), batches))
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
        self.sampler.load_state_dict(state)  # type: ignore[union-attr]
        if isinstance(self.dataset, RadiDataset):
            self.dataset.set_epoch(state["epoch"])


def build_reader(radi: Any, modalities: Sequence[str] | str | None, label: str | None, *,
                 cache: Cache | CacheStrategy | str | None = None, cache_bytes: int = 2 << 30,
                 cache_path: str | None = None, subjects: Sequence[str] | None = None) -> VolumeReader:
    """A ``VolumeReader`` for ``radi`` (``modalities`` default: every collection but ``label``)."""
    if isinstance(radi, VolumeReader):
        return radi
    if modalities is None:
        modalities = [c for c in radi.collection_names if c != label]
    if cache is None or isinstance(cache, (CacheStrategy, str)):
        cache = make_cache(cache or CacheStrategy.NONE, max_bytes=cache_bytes, path=cache_path)
    return VolumeReader.from_radi(radi, modalities, label, cache=cache, subjects=subjects)


def _loader(dataset: RadiDataset, sampler: RadiSampler, *, batch_size: int, num_workers: int,
            pin_memory: bool | None, device: torch.device | str | None, persistent_workers: bool | None,
            prefetch_factor: int | None, timeout: float, multiprocessing_context: Any,
            drop_last: bool = False, collate_fn: Callable[[list[Any]], Any] | None = None,
            worker_init_fn: Callable[[int], None] | None = None, worker_mode: str = "auto") -> RadiDataLoader:
    cuda = torch.cuda.is_available()
    dev = torch.device(device) if device is not None else None
    if pin_memory is None:
        pin_memory = cuda and (dev is None or dev.type == "cuda")
    if worker_mode not in ("auto", "processes", "threads"):
        raise ValueError(f"worker_mode must be 'auto', 'processes' or 'threads', got {worker_mode!r}")
    if worker_mode == "auto":  # measured: threads win unless per-sample Python transforms hold the GIL
        explicit = multiprocessing_context is not None or getattr(dataset, "transforms", None) is not None
        worker_mode = "processes" if explicit else "threads"
    threads = num_workers if worker_mode == "threads" else 0
    if threads:
        num_workers = 0
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(
            persistent_workers=bool(persistent_workers) if persistent_workers is not None else False,
            prefetch_factor=prefetch_factor or 2, timeout=timeout,
            multiprocessing_context=multiprocessing_context, worker_init_fn=worker_init_fn or limit_worker_threads)
    if collate_fn is None:  # whole batches read straight into one buffer (see RadiDataset.__getitems__)
        dataset.batched_reads = True
        collate_fn = collate
    loader = RadiDataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                            pin_memory=bool(pin_memory), drop_last=drop_last, collate_fn=collate_fn, **kwargs)
    loader.device = dev
    loader.threads = threads
    return loader


def create_training_dataloader(
    radi: Any,
    *,
    modalities: Sequence[str] | str | None = None,
    label: str | None = None,
    patch_size: Sequence[int] | None = (64, 64, 64),
    batch_size: int = 2,
    num_workers: int = 0,
    cache_strategy: CacheStrategy | str = CacheStrategy.NONE,
    cache_bytes: int = 2 << 30,
    cache_path: str | None = None,
    transforms: Callable[[dict[str, Any]], Any] | None = None,
    seed: int = 0,
    loading_mode: LoadingMode | str | None = None,
    patches_per_volume: int = 1,
    sampler: str | Mapping[int, float] = "uniform",
    foreground_prob: float = 0.5,
    plane: str | int = "axial",
    subjects: Sequence[str] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    shard_mode: str = "pad",
    device: torch.device | str | None = None,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
    timeout: float = 0,
    multiprocessing_context: Any = None,
    worker_mode: str = "auto",
    drop_last: bool = False,
) -> RadiDataLoader:
    """Shuffled training batches: random patches (``patch_size``), full volumes or 2D slices.

    Args:
        radi: a ``RadiObject`` (or a view of one) or a ``VolumeReader``.
        modalities: image collections stacked as channels (default: all but ``label``).
        label: the label collection (``None``: images only).
        patch_size: patch shape for ``LoadingMode.PATCH`` (the default mode when given);
            ``None`` -> whole volumes.
        cache_strategy: ``NONE``, ``IN_MEMORY`` (per process), ``SHARED_MEMORY`` (one copy per node,
            shared by workers) or ``DISK`` (``cache_path``); budget ``cache_bytes``.
        seed: patches and order are functions of ``(seed, epoch, index)``; call
            ``ml.distributed.set_epoch(loader, epoch)`` each epoch.
        patches_per_volume / sampler / foreground_prob: see ``ml.datasets.PatchDataset``.
        rank / world_size / shard_mode: DDP sharding (default: the ``torch.distributed`` world);
            ``shard_mode`` ``"pad"`` or ``"drop"`` equalises shards.
        device: deliver batches on this device (non-blocking copies); ``pin_memory`` defaults to
            ``True`` when CUDA is present.
        timeout: seconds to wait for a worker batch before raising (0 = forever).
        worker_mode: ``"threads"``: ``num_workers`` threads in this process build whole batches (no
            batch pickling between processes; measured faster on few cores); ``"processes"``:
            DataLoader worker processes; ``"auto"`` (default): processes when ``transforms`` or a
            ``multiprocessing_context`` is given (per-sample Python transforms hold the GIL),
            threads otherwise.
    """
    reader = build_reader(radi, modalities, label, cache=cache_strategy, cache_bytes=cache_bytes,
                          cache_path=cache_path, subjects=subjects)
    mode = LoadingMode(loading_mode) if loading_mode is not None else (
        LoadingMode.PATCH if patch_size is not None else LoadingMode.FULL_VOLUME)
    group = 1
    dataset: RadiDataset
    if mode is LoadingMode.PATCH:
        if patch_size is None:
            raise ValueError("LoadingMode.PATCH needs patch_size")
        dataset = PatchDataset(reader, patch_size, patches_per_volume=patches_per_volume, sampler=sampler,
                               foreground_prob=foreground_prob, transforms=transforms, seed=seed)
        group = patches_per_volume
    elif mode is LoadingMode.SLICE_2D:
        dataset = SliceDataset(reader, plane, transforms=transforms, seed=seed)
    else:
        dataset = VolumeDataset(reader, transforms=transforms, seed=seed)
    if shard_mode not in ("pad", "drop"):
        raise ValueError(f"training shard_mode must be 'pad' or 'drop', got {shard_mode!r}")
    samp = RadiSampler(dataset, world_size, rank, shuffle=True, seed=seed, mode=shard_mode,  # type: ignore[arg-type]
                       group_size=group)
    return _loader(dataset, samp, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                   device=device, persistent_workers=persistent_workers, prefetch_factor=prefetch_factor,
                   timeout=timeout, multiprocessing_context=multiprocessing_context, drop_last=drop_last,
                   worker_mode=worker_mode)


#: Training options a shared configuration may pass to ``create_validation_dataloader`` (ignored there).
_TRAINING_ONLY = frozenset({"patches_per_volume", "sampler", "foreground_prob", "shard_mode", "drop_last"})


def create_validation_dataloader(
    radi: Any,
    *,
    modalities: Sequence[str] | str | None = None,
    label: str | None = None,
    patch_size: Sequence[int] | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    cache_strategy: CacheStrategy | str = CacheStrategy.NONE,
    cache_bytes: int = 2 << 30,
    cache_path: str | None = None,
    transforms: Callable[[dict[str, Any]], Any] | None = None,
    seed: int = 0,
    loading_mode: LoadingMode | str | None = None,
    plane: str | int = "axial",
    subjects: Sequence[str] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    device: torch.device | str | None = None,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
    timeout: float = 0,
    multiprocessing_context: Any = None,
    worker_mode: str = "auto",
    **training_only: Any,
) -> RadiDataLoader:
    """Validation batches in a fixed order, each sample exactly once across ranks (no padding).

    Whole volumes by default; with ``patch_size`` the same patches every epoch (drawn for epoch 0);
    ``loading_mode=SLICE_2D`` for slices. Shards may differ in length by one sample. Training-only
    options (``patches_per_volume``, ``sampler``, ``foreground_prob``, ``shard_mode``,
    ``drop_last``) are accepted and ignored, so one configuration can build both loaders.
    """
    unknown = set(training_only) - _TRAINING_ONLY
    if unknown:
        raise TypeError(f"create_validation_dataloader: unexpected arguments {sorted(unknown)}")
    reader = build_reader(radi, modalities, label, cache=cache_strategy, cache_bytes=cache_bytes,
                          cache_path=cache_path, subjects=subjects)
    mode = LoadingMode(loading_mode) if loading_mode is not None else (
        LoadingMode.PATCH if patch_size is not None else LoadingMode.FULL_VOLUME)
    dataset: RadiDataset
    if mode is LoadingMode.PATCH:
        dataset = PatchDataset(reader, patch_size or (64, 64, 64), transforms=transforms, seed=seed)
    elif mode is LoadingMode.SLICE_2D:
        dataset = SliceDataset(reader, plane, transforms=transforms, seed=seed)
    else:
        dataset = VolumeDataset(reader, transforms=transforms, seed=seed)
    dataset.fixed_epoch = 0
    samp = RadiSampler(dataset, world_size, rank, shuffle=False, seed=seed, mode="exact")
    return _loader(dataset, samp, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                   device=device, persistent_workers=persistent_workers, prefetch_factor=prefetch_factor,
                   timeout=timeout, multiprocessing_context=multiprocessing_context, worker_mode=worker_mode)


def create_inference_dataloader(
    radi: Any,
    *,
    modalities: Sequence[str] | str | None = None,
    patch_size: Sequence[int] = (96, 96, 96),
    overlap: float = 0.25,
    batch_size: int = 2,
    num_workers: int = 0,
    cache_strategy: CacheStrategy | str = CacheStrategy.NONE,
    cache_bytes: int = 2 << 30,
    cache_path: str | None = None,
    transforms: Callable[[dict[str, Any]], Any] | None = None,
    subjects: Sequence[str] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    device: torch.device | str | None = None,
    pin_memory: bool | None = None,
    timeout: float = 0,
    multiprocessing_context: Any = None,
    worker_mode: str = "auto",
    label: str | None = None,
) -> RadiDataLoader:
    """Grid patches over every subject (sliding window), in order, each exactly once across ranks.

    With several ranks each rank gets whole subjects (``r::world``), so its aggregator can finish
    and write them.

    Feed the model's outputs with the batch to ``ml.aggregate.GridAggregator`` to write a new
    collection. ``label`` is ignored unless given (then labels come along, e.g. for evaluation).
    """
    reader = build_reader(radi, modalities, label, cache=cache_strategy, cache_bytes=cache_bytes,
                          cache_path=cache_path, subjects=subjects)
    from radiobject.ml.distributed import _dist_default

    world, r = _dist_default(world_size, rank)
    if world > 1:  # whole subjects per rank, so that each rank completes (and writes) its volumes
        reader = reader.subset(range(r, len(reader), world))
    dataset = GridPatchDataset(reader, patch_size, overlap=overlap, transforms=transforms,
                               with_label=label is not None)
    samp = RadiSampler(dataset, 1, 0, shuffle=False, mode="exact")
    return _loader(dataset, samp, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                   device=device, persistent_workers=None, prefetch_factor=None, timeout=timeout,
                   multiprocessing_context=multiprocessing_context, worker_mode=worker_mode)


def train_steps(loader: Any, steps: int = 10, *, model: torch.nn.Module | None = None, lr: float = 1e-3,
                classes: int = 2) -> dict[str, float]:
    """A short training run through ``loader`` (e.g. the README's smoke run); returns throughput.

    ``model`` defaults to a tiny two-layer 3D convolutional net over the batch's channels,
    trained with cross-entropy against ``label`` when batches carry one (else a mean-square loss
    toward the input). Returns ``{"steps", "patches", "seconds", "patches_per_s", "loss"}``.
    """
    import time

    import torch.nn.functional as F

    it = iter(loader)
    first = next(it)
    channels = int(first["image"].shape[1])
    spatial = first["image"].ndim - 2
    conv = torch.nn.Conv3d if spatial == 3 else torch.nn.Conv2d
    if model is None:
        model = torch.nn.Sequential(conv(channels, 8, 3, padding=1), torch.nn.ReLU(), conv(8, classes, 1))
    device = first["image"].device
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    patches, loss_value, t0 = 0, float("nan"), time.perf_counter()
    batch, done = first, 0
    while done < steps:
        out = model(batch["image"])
        if "label" in batch:
            target = batch["label"][:, 0].long().clamp(0, out.shape[1] - 1)
            loss = F.cross_entropy(out, target)
        else:
            loss = F.mse_loss(out[:, :1], batch["image"][:, :1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = float(loss.detach())
        patches += int(batch["image"].shape[0])
        done += 1
        if done >= steps:
            break
        batch = next(it, None)
        if batch is None:  # next epoch
            it = iter(loader)
            batch = next(it)
    seconds = time.perf_counter() - t0
    return {"steps": float(done), "patches": float(patches), "seconds": seconds,
            "patches_per_s": patches / seconds if seconds > 0 else float("nan"), "loss": loss_value}
