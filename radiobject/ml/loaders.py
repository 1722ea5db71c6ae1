"""Loader factories: training, validation and inference ``DataLoader`` s over a ``RadiObject``.

Each factory selects collections and subjects (:mod:`radiobject.ml.selection`: roles, ``split=`` /
``fold=``, completeness policy), builds a ``VolumeReader`` (no pixel I/O), a dataset
(:mod:`radiobject.ml.datasets`), a ``RadiSampler`` (a ``DistributedSampler``: one rank by default, the
``torch.distributed`` world when initialised) and a ``RadiDataLoader`` (resumable; see
:mod:`radiobject.ml.dataloader`).

Settings come as a handful of config objects (:mod:`radiobject.ml.config`: ``patch=PatchConfig``,
``cache=CacheConfig``, ``loader=LoaderConfig``, ``distributed=DistributedConfig``) or as the flat
keywords of the seed API (``patch_size=``, ``batch_size=``, ``num_workers=``, ``cache_strategy=``,
``rank=``, ``world_size=``, ...), which fill the same configs.

**Roles.** ``modalities`` are the input channels, ``label`` the target: a label collection is an
input only when named in ``modalities``, the ``label`` never (in both: ``LoaderConfigError``). With
``modalities=None`` the inputs are the collections that are not labels (:mod:`radiobject.ml.selection`).

**Geometry.** ``meta_tensors=True`` gives ``image`` / ``label`` as MONAI ``MetaTensor`` s with the
sample's real affine (MONAI spatial transforms then act in millimetres and update it); ``None``
(default) turns it on when ``transforms`` is a MONAI transform.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from radiobject.ml._loader_checks import check_cache_path, names_of, nonempty, not_a_source, typed
from radiobject.ml.cache import Cache, CacheStrategy, make_cache
from radiobject.ml.config import CacheConfig, DistributedConfig, LoaderConfig, PatchConfig, _integer, resolve
from radiobject.ml.dataloader import RadiDataLoader, make_loader, to_device
from radiobject.ml.datasets import GridPatchDataset, LoadingMode, PatchDataset, RadiDataset, SliceDataset, VolumeDataset
from radiobject.ml.errors import LoaderArgumentError, LoaderConfigError
from radiobject.ml.reader import VolumeReader
from radiobject.ml.sampler import RadiSampler, _dist_default, set_epoch
from radiobject.ml.selection import complete_subjects, default_modalities, split_subjects
from radiobject.model.radi_object import RadiObject

__all__ = [
    "RadiDataLoader",
    "build_reader",
    "create_inference_dataloader",
    "create_training_dataloader",
    "create_validation_dataloader",
    "to_device",
    "train_steps",
]

Transform = Callable[[dict[str, Any]], Any]


def build_reader(
    radi: Any,
    modalities: Sequence[str] | str | None,
    label: str | None,
    *,
    cache: Cache | CacheConfig | CacheStrategy | str | None = None,
    subjects: Sequence[str] | None = None,
    split: str | None = None,
    fold: int | None = None,
    incomplete: str = "error",
) -> VolumeReader:
    """A ``VolumeReader`` over ``radi``: roles, split / fold and completeness applied (see module doc)."""
    if isinstance(radi, VolumeReader):
        return radi
    if isinstance(radi, (str, os.PathLike)):  # a store location: opened here
        radi = RadiObject(radi)
    elif not hasattr(radi, "collection_names"):
        raise not_a_source(radi)
    if modalities is None:
        modalities = default_modalities(radi, label)
    mods = names_of("modalities", modalities, radi.uri)
    if not mods:
        raise LoaderConfigError(f"{radi.uri}: modalities is empty; name at least one image collection")
    if label is not None and not isinstance(label, str):
        raise LoaderArgumentError(f"label must be a collection name (str) or None, got {type(label).__name__}")
    if label is not None and label in mods:  # the target would also be an input channel
        raise LoaderConfigError(
            f"{radi.uri}: collection {label!r} is the label and also named in modalities: the target would "
            f"be an input channel; pass it as label={label!r} only (modalities are the inputs)"
        )
    if subjects is not None:
        subjects = names_of("subjects", subjects, radi.uri)
    chosen = split_subjects(radi, split, fold)
    if subjects is not None and chosen is not None:
        keep = set(chosen)
        chosen = [s for s in subjects if s in keep]
    elif subjects is not None:
        chosen = list(subjects)
    names = [*mods, label] if label else mods
    chosen = complete_subjects(radi, names, chosen, incomplete)
    if not isinstance(cache, Cache):
        cfg = cache if isinstance(cache, CacheConfig) else CacheConfig(strategy=cache or CacheStrategy.NONE)
        check_cache_path(cfg, radi.uri)
        # cast: CacheConfig.__post_init__ turns every strategy (None included) into a CacheStrategy
        cache = make_cache(cast(CacheStrategy, cfg.strategy), max_bytes=cfg.max_bytes, path=cfg.path)
    return VolumeReader.from_radi(radi, mods, label, cache=cache, subjects=chosen)


def _wants_meta(meta_tensors: bool | None, transforms: Transform | None) -> bool:
    if meta_tensors is not None:
        return bool(meta_tensors)
    return transforms is not None and type(transforms).__module__.startswith("monai.")


def _dataset(
    reader: VolumeReader, patch: PatchConfig, *, transforms: Transform | None, seed: int, training: bool, meta: bool
) -> RadiDataset:
    mode = (
        LoadingMode(patch.loading_mode)
        if patch.loading_mode is not None
        else (LoadingMode.PATCH if patch.patch_size is not None else LoadingMode.FULL_VOLUME)
    )
    dataset: RadiDataset
    if mode is LoadingMode.PATCH:
        if patch.patch_size is None:
            raise ValueError("LoadingMode.PATCH needs patch_size")
        if training:
            dataset = PatchDataset(
                reader,
                patch.patch_size,
                patches_per_volume=patch.patches_per_volume,
                sampler=patch.sampler,
                foreground_prob=patch.foreground_prob,
                transforms=transforms,
                seed=seed,
            )
        else:
            dataset = PatchDataset(reader, patch.patch_size, transforms=transforms, seed=seed)
    elif mode is LoadingMode.SLICE_2D:
        dataset = SliceDataset(reader, patch.plane, transforms=transforms, seed=seed)
    else:
        dataset = VolumeDataset(reader, transforms=transforms, seed=seed)
    dataset.meta_tensors = meta
    return dataset


def _make(dataset: RadiDataset, sampler: RadiSampler, cfg: LoaderConfig, *, training: bool) -> RadiDataLoader:
    ahead = cfg.prefetch_patches
    sampler.prefetch_patches = 2 * cfg.batch_size if ahead is None else int(ahead)
    return make_loader(
        dataset,
        sampler,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        pin_memory=cfg.pin_memory,
        device=cfg.device,
        persistent_workers=cfg.persistent_workers,
        prefetch_factor=cfg.prefetch_factor,
        timeout=cfg.timeout,
        multiprocessing_context=cfg.multiprocessing_context,
        drop_last=cfg.drop_last if training else False,
        worker_mode=cfg.worker_mode,
        pad=cfg.pad_collate,
    )


@typed
def create_training_dataloader(
    radi: Any,
    *,
    modalities: Sequence[str] | str | None = None,
    label: str | None = None,
    patch: PatchConfig | None = None,
    cache: CacheConfig | None = None,
    loader: LoaderConfig | None = None,
    distributed: DistributedConfig | None = None,
    transforms: Transform | None = None,
    seed: int = 0,
    subjects: Sequence[str] | None = None,
    split: str | None = None,
    fold: int | None = None,
    incomplete: str = "error",
    meta_tensors: bool | None = None,
    **options: Any,
) -> RadiDataLoader:
    """Shuffled training batches: random patches, full volumes or 2D slices.

    Args:
        radi: a ``RadiObject`` (or a view of one) or a ``VolumeReader``.
        modalities: image collections stacked as input channels (default: every non-label collection).
        label: the label collection (``None``: images only); never an input channel (naming it in
            ``modalities`` too is a ``LoaderConfigError``).
        patch: patch settings (``ml.config.PatchConfig``).
        cache: cache settings (``ml.config.CacheConfig``).
        loader: ``DataLoader`` settings (``ml.config.LoaderConfig``).
        distributed: rank / world settings (``ml.config.DistributedConfig``).
        transforms: per-sample transform (MONAI or TorchIO dict transforms).
        seed: patches and order are functions of ``(seed, epoch, index)``; call
            ``radiobject.ml.set_epoch(loader, epoch)`` each epoch (a second pass over one epoch warns).
        subjects: which subjects (IDs; default all).
        split: the ``obs_meta`` split to take (see ``ml.selection``).
        fold: the ``obs_meta`` fold to take (see ``ml.selection``).
        incomplete: ``"error"`` (default: ``IncompleteSubjectsError`` listing subjects lacking a
            collection) or ``"skip"`` (leave them out, with a warning saying how many).
        meta_tensors: samples as MONAI ``MetaTensor`` s with the real affine (``None``: when
            ``transforms`` is a MONAI transform).
        **options: the flat keywords of the seed API, filling the configs above: ``patch_size``
            (default ``(64, 64, 64)``; ``None``: whole volumes), ``patches_per_volume``, ``sampler``,
            ``foreground_prob``, ``loading_mode``, ``plane``, ``cache_strategy``, ``cache_bytes``,
            ``cache_path``, ``batch_size`` (2), ``num_workers``, ``worker_mode``, ``device``,
            ``pin_memory``, ``persistent_workers``, ``prefetch_factor``, ``timeout``,
            ``multiprocessing_context``, ``drop_last``, ``prefetch_patches`` (patches read ahead;
            default 2 x ``batch_size``, 0: off), ``rank``, ``world_size``, ``shard_mode``.
    """
    p, c, lc, d = resolve(
        options, patch=patch, cache=cache, loader=loader, distributed=distributed, caller="create_training_dataloader"
    )
    seed = _integer("seed", seed, 0)
    reader = build_reader(
        radi, modalities, label, cache=c, subjects=subjects, split=split, fold=fold, incomplete=incomplete
    )
    nonempty(reader, "create_training_dataloader")
    dataset = _dataset(
        reader, p, transforms=transforms, seed=seed, training=True, meta=_wants_meta(meta_tensors, transforms)
    )
    group = p.patches_per_volume if isinstance(dataset, PatchDataset) else 1
    # the ignore below: shard_mode is validated by LoaderConfig to a mode name
    samp = RadiSampler(
        dataset,
        d.world_size,
        d.rank,
        shuffle=True,
        seed=seed,
        mode=d.shard_mode,  # type: ignore[arg-type]
        group_size=group,
    )
    return _make(dataset, samp, lc, training=True)


#: Training options a shared configuration may pass to ``create_validation_dataloader`` (ignored there).
_TRAINING_ONLY = frozenset({"patches_per_volume", "sampler", "foreground_prob", "shard_mode", "drop_last"})


@typed
def create_validation_dataloader(
    radi: Any,
    *,
    modalities: Sequence[str] | str | None = None,
    label: str | None = None,
    patch: PatchConfig | None = None,
    cache: CacheConfig | None = None,
    loader: LoaderConfig | None = None,
    distributed: DistributedConfig | None = None,
    transforms: Transform | None = None,
    seed: int = 0,
    subjects: Sequence[str] | None = None,
    split: str | None = None,
    fold: int | None = None,
    incomplete: str = "error",
    meta_tensors: bool | None = None,
    **options: Any,
) -> RadiDataLoader:
    """Validation batches in a fixed order, each sample exactly once across ranks (no padding).

    Whole volumes by default (``patch_size=None``, ``batch_size=1``); with ``patch_size`` the same
    patches every epoch (drawn for epoch 0); ``loading_mode=SLICE_2D`` for slices. Shards may differ
    in length by one sample. A batch of volumes with different shapes raises ``BatchShapeError``
    naming the subjects and shapes, unless ``pad_collate=True`` (zero-pads to the largest shape;
    ``batch["shape"]`` keeps each sample's own). Training-only options (``patches_per_volume``,
    ``sampler``, ``foreground_prob``, ``shard_mode``, ``drop_last``) are accepted and ignored, so
    one configuration can build both loaders. Other arguments as ``create_training_dataloader``.
    """
    options = {k: v for k, v in options.items() if k not in _TRAINING_ONLY}
    p, c, lc, d = resolve(
        options,
        patch=patch,
        cache=cache,
        loader=loader,
        distributed=distributed,
        defaults={"patch_size": None, "batch_size": 1},
        caller="create_validation_dataloader",
    )
    seed = _integer("seed", seed, 0)
    reader = build_reader(
        radi, modalities, label, cache=c, subjects=subjects, split=split, fold=fold, incomplete=incomplete
    )
    nonempty(reader, "create_validation_dataloader")
    dataset = _dataset(
        reader, p, transforms=transforms, seed=seed, training=False, meta=_wants_meta(meta_tensors, transforms)
    )
    dataset.fixed_epoch = 0
    samp = RadiSampler(dataset, d.world_size, d.rank, shuffle=False, seed=seed, mode="exact")
    return _make(dataset, samp, lc, training=False)


@typed
def create_inference_dataloader(
    radi: Any,
    *,
    modalities: Sequence[str] | str | None = None,
    label: str | None = None,
    patch: PatchConfig | None = None,
    cache: CacheConfig | None = None,
    loader: LoaderConfig | None = None,
    distributed: DistributedConfig | None = None,
    transforms: Transform | None = None,
    subjects: Sequence[str] | None = None,
    split: str | None = None,
    fold: int | None = None,
    incomplete: str = "error",
    **options: Any,
) -> RadiDataLoader:
    """Grid patches over every subject (sliding window), in order, each exactly once across ranks.

    ``patch_size`` default ``(96, 96, 96)``, ``overlap`` 0.25, ``batch_size`` 2. With several ranks
    each rank gets whole subjects (``r::world``), so its aggregator can finish and write them.
    Feed the model's outputs with the batch to ``ml.aggregate.GridAggregator`` to write a new
    collection. ``label`` is ignored unless given (then labels come along, e.g. for evaluation).
    """
    p, c, lc, d = resolve(
        options,
        patch=patch,
        cache=cache,
        loader=loader,
        distributed=distributed,
        defaults={"patch_size": (96, 96, 96)},
        caller="create_inference_dataloader",
    )
    if p.patch_size is None:
        raise ValueError("create_inference_dataloader needs a patch_size")
    reader = build_reader(
        radi, modalities, label, cache=c, subjects=subjects, split=split, fold=fold, incomplete=incomplete
    )
    nonempty(reader, "create_inference_dataloader")
    world, r = _dist_default(d.world_size, d.rank)
    if world > 1:  # whole subjects per rank, so that each rank completes (and writes) its volumes
        reader = reader.subset(range(r, len(reader), world))
    dataset = GridPatchDataset(
        reader, p.patch_size, overlap=p.overlap, transforms=transforms, with_label=label is not None
    )
    samp = RadiSampler(dataset, 1, 0, shuffle=False, mode="exact")
    return _make(
        dataset,
        samp,
        LoaderConfig(**{**lc.__dict__, "persistent_workers": None, "prefetch_factor": None}),
        training=False,
    )


def train_steps(
    loader: Any, steps: int = 10, *, model: torch.nn.Module | None = None, lr: float = 1e-3, classes: int = 2
) -> dict[str, float]:
    """A short training run through ``loader`` (e.g. the README's smoke run); returns throughput.

    ``model`` defaults to a tiny two-layer 3D convolutional net over the batch's channels,
    trained with cross-entropy against ``label`` when batches carry one (else a mean-square loss
    toward the input). Returns ``{"steps", "patches", "seconds", "patches_per_s", "loss"}``.
    """
    import time

    import torch.nn.functional as F

    epoch = int(getattr(getattr(loader, "sampler", None), "epoch", 0))
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
            epoch += 1
            set_epoch(loader, epoch)
            it = iter(loader)
            batch = next(it)
    seconds = time.perf_counter() - t0
    return {
        "steps": float(done),
        "patches": float(patches),
        "seconds": seconds,
        "patches_per_s": patches / seconds if seconds > 0 else float("nan"),
        "loss": loss_value,
    }
