"""Loader settings as frozen, picklable dataclasses, so the loader factories take a handful of arguments.

* :class:`PatchConfig` — what one sample is (patch size, patches per volume, sampler, mode, plane);
* :class:`CacheConfig` — where decoded volumes are kept (strategy, budget, path);
* :class:`LoaderConfig` — batching and workers (batch size, workers, worker mode, device, ...);
* :class:`DistributedConfig` — rank, world size and shard equalisation.

Every factory also accepts the flat keyword spellings of the seed API (``patch_size=``,
``batch_size=``, ``num_workers=``, ``cache_strategy=``, ``rank=``, ...): :func:`resolve` folds them
into the configs. Giving one setting both ways (``batch_size=4`` and ``loader=LoaderConfig(...)``
with another batch size) raises ``TypeError``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from radiobject.ml.cache import CacheStrategy
from radiobject.ml.errors import LoaderArgumentError, LoaderConfigError

__all__ = ["CacheConfig", "DistributedConfig", "LoaderConfig", "PatchConfig", "resolve"]


@dataclass(frozen=True)
class PatchConfig:
    """What one sample is.

    Attributes:
        patch_size: patch shape (3 ints, or one int for a cube) for ``LoadingMode.PATCH``; ``None``: whole volumes.
        patches_per_volume: patches per subject per epoch (kept consecutive on one rank).
        sampler: ``"uniform"``, ``"foreground"`` or ``{label value: weight}`` (class ratios).
        foreground_prob: probability of a foreground-centred patch (``sampler="foreground"``).
        loading_mode: ``LoadingMode`` value; ``None``: ``PATCH`` when ``patch_size`` else ``FULL_VOLUME``.
        plane: slicing plane for ``LoadingMode.SLICE_2D``.
        overlap: grid overlap for inference (MONAI ``sliding_window_inference`` convention).
    """

    patch_size: tuple[int, ...] | None = (64, 64, 64)
    patches_per_volume: int = 1
    sampler: str | Mapping[int, float] = "uniform"
    foreground_prob: float = 0.5
    loading_mode: str | None = None
    plane: str | int = "axial"
    overlap: float = 0.25

    def __post_init__(self) -> None:
        if self.patch_size is not None:
            size = self.patch_size
            if isinstance(size, (int, np.integer)):  # one edge: a cube, as MONAI and TorchIO take it
                size = (int(size),) * 3
            if isinstance(size, (str, bytes)) or not all(isinstance(p, (int, np.integer)) for p in size):
                raise LoaderArgumentError(f"patch_size is an int or a tuple of ints, got {self.patch_size!r}")
            if not 2 <= len(size) <= 3 or any(int(p) < 1 for p in size):
                raise LoaderConfigError(f"patch_size needs 2 or 3 positive edges, got {self.patch_size!r}")
            object.__setattr__(self, "patch_size", tuple(int(p) for p in size))
        if self.loading_mode is not None:
            mode = str(getattr(self.loading_mode, "value", self.loading_mode)).strip().lower()
            if mode not in ("full_volume", "patch", "slice_2d"):
                raise LoaderConfigError(
                    f"loading_mode must be 'full_volume', 'patch' or 'slice_2d', got {self.loading_mode!r}"
                )
            object.__setattr__(self, "loading_mode", mode)
        object.__setattr__(self, "patches_per_volume", _integer("patches_per_volume", self.patches_per_volume, 1))
        object.__setattr__(self, "sampler", _sampler(self.sampler))
        object.__setattr__(self, "foreground_prob", _fraction("foreground_prob", self.foreground_prob, 0.0, 1.0))
        plane = self.plane
        if isinstance(plane, str) and plane.strip().lower() in _PLANES:
            object.__setattr__(self, "plane", plane.strip().lower())
        elif isinstance(plane, bool) or not isinstance(plane, (int, np.integer)) or not 0 <= plane <= 2:
            raise LoaderConfigError(f"plane must be one of {list(_PLANES)} or an array axis 0, 1, 2; got {plane!r}")
        ov = self.overlap
        for v in ov if isinstance(ov, (tuple, list)) else (ov,):
            _fraction("overlap", v, 0.0, 1.0, open_hi=True)


@dataclass(frozen=True)
class CacheConfig:
    """Where decoded volumes are kept: ``strategy`` (``CacheStrategy``), ``max_bytes`` budget, ``path`` for DISK."""

    strategy: CacheStrategy | str | None = CacheStrategy.NONE
    max_bytes: int = 2 << 30
    path: str | None = None

    def __post_init__(self) -> None:
        value: Any = self.strategy
        if value is None:
            value = CacheStrategy.NONE
        elif isinstance(value, str) and not isinstance(value, CacheStrategy):
            by_name = {m.name.lower(): m for m in CacheStrategy} | {m.value.lower(): m for m in CacheStrategy}
            if value.strip().lower() not in by_name:
                raise LoaderConfigError(
                    f"cache strategy must be one of {[m.value for m in CacheStrategy]}, got {value!r}"
                )
            value = by_name[value.strip().lower()]
        try:
            object.__setattr__(self, "strategy", CacheStrategy(value))
        except ValueError:
            raise LoaderConfigError(
                f"cache strategy must be one of {[m.value for m in CacheStrategy]}, got {value!r}"
            ) from None
        object.__setattr__(self, "max_bytes", _integer("cache_bytes (max_bytes)", self.max_bytes, 0))
        if self.path is not None and not isinstance(self.path, (str, os.PathLike)):
            raise LoaderArgumentError(f"cache_path must be a path, got {type(self.path).__name__}")


@dataclass(frozen=True)
class LoaderConfig:
    """Batching and workers (the ``DataLoader`` side).

    Attributes:
        batch_size: samples per batch.
        num_workers: worker threads or processes (see ``worker_mode``).
        worker_mode: ``"auto"`` (processes with per-sample transforms, an explicit
            ``multiprocessing_context``, or a cohort larger than the cache and 64 MiB, when
            ``/dev/shm`` has room; threads otherwise: see ``radiobject.ml._worker_mode``),
            ``"threads"`` or ``"processes"``.
        device: deliver batches on this device (non-blocking copies from pinned memory).
        pin_memory: default ``True`` when CUDA is present.
        persistent_workers / prefetch_factor / timeout / multiprocessing_context: as in ``DataLoader``
            (``timeout``: seconds to wait for a worker batch, 0 = forever), except two defaults for
            process workers: ``persistent_workers=None`` keeps them (they start once per loader), and
            ``multiprocessing_context=None`` picks ``fork`` or, once this process has used
            tensorstore, ``forkserver`` (see ``ml.dataloader.default_context``).
        drop_last: drop a short last batch (training only).
        prefetch_patches: patches read ahead of the one being built (``None``: 2 x ``batch_size``;
            0: off), while the consumer's step between batches leaves time to overlap them with
            (``ml.dataloader.Pace``: a loop that asks for the next batch at once gets none); see
            ``ml.sampler.RadiSampler``.
        pad_collate: validation batches of volumes with different shapes are zero-padded to the
            largest shape (``False``: such a batch raises ``BatchShapeError`` naming the subjects).
    """

    batch_size: int = 2
    num_workers: int = 0
    worker_mode: str = "auto"
    device: Any = None
    pin_memory: bool | None = None
    persistent_workers: bool | None = None
    prefetch_factor: int | None = None
    timeout: float = 0
    multiprocessing_context: Any = None
    drop_last: bool = False
    pad_collate: bool = False
    prefetch_patches: int | None = None

    def __post_init__(self) -> None:
        import math
        import multiprocessing

        import torch

        object.__setattr__(self, "batch_size", _integer("batch_size", self.batch_size, 1))
        object.__setattr__(self, "num_workers", _integer("num_workers", self.num_workers, 0))
        if self.worker_mode not in ("auto", "processes", "threads"):
            raise LoaderConfigError(f"worker_mode must be 'auto', 'processes' or 'threads', got {self.worker_mode!r}")
        if self.prefetch_patches is not None:
            object.__setattr__(self, "prefetch_patches", _integer("prefetch_patches", self.prefetch_patches, 0))
        if self.prefetch_factor is not None:
            object.__setattr__(self, "prefetch_factor", _integer("prefetch_factor", self.prefetch_factor, 1))
        t = self.timeout
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise LoaderConfigError(f"timeout must be a finite number of seconds >= 0 (0: no limit), got {t!r}")
        ctx = self.multiprocessing_context
        if isinstance(ctx, str) and ctx not in multiprocessing.get_all_start_methods():
            raise LoaderConfigError(
                f"multiprocessing_context must be one of {multiprocessing.get_all_start_methods()}, got {ctx!r}"
            )
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError, ValueError) as exc:
                raise LoaderConfigError(f"device {self.device!r} is not a torch device: {exc}") from None


@dataclass(frozen=True)
class DistributedConfig:
    """Rank and world size (``None``: from ``torch.distributed``, else 0 / 1); ``shard_mode`` ``"pad"`` / ``"drop"``."""

    rank: int | None = None
    world_size: int | None = None
    shard_mode: str = "pad"

    def __post_init__(self) -> None:
        if self.shard_mode not in ("pad", "drop"):
            raise LoaderConfigError(f"shard_mode must be 'pad' or 'drop', got {self.shard_mode!r}")
        if self.world_size is not None:
            object.__setattr__(self, "world_size", _integer("world_size", self.world_size, 1))
        if self.rank is not None:
            object.__setattr__(self, "rank", _integer("rank", self.rank, 0))
        if self.rank is not None and self.world_size is not None and self.rank >= self.world_size:
            raise LoaderConfigError(f"rank {self.rank} out of range for world_size {self.world_size}")


#: Flat (seed) keyword -> (config argument, field).
FLAT: dict[str, tuple[str, str]] = {
    "patch_size": ("patch", "patch_size"),
    "patches_per_volume": ("patch", "patches_per_volume"),
    "sampler": ("patch", "sampler"),
    "foreground_prob": ("patch", "foreground_prob"),
    "loading_mode": ("patch", "loading_mode"),
    "plane": ("patch", "plane"),
    "overlap": ("patch", "overlap"),
    "cache_strategy": ("cache", "strategy"),
    "cache_bytes": ("cache", "max_bytes"),
    "cache_path": ("cache", "path"),
    "batch_size": ("loader", "batch_size"),
    "num_workers": ("loader", "num_workers"),
    "worker_mode": ("loader", "worker_mode"),
    "device": ("loader", "device"),
    "pin_memory": ("loader", "pin_memory"),
    "persistent_workers": ("loader", "persistent_workers"),
    "prefetch_factor": ("loader", "prefetch_factor"),
    "timeout": ("loader", "timeout"),
    "multiprocessing_context": ("loader", "multiprocessing_context"),
    "drop_last": ("loader", "drop_last"),
    "pad_collate": ("loader", "pad_collate"),
    "prefetch_patches": ("loader", "prefetch_patches"),
    "rank": ("distributed", "rank"),
    "world_size": ("distributed", "world_size"),
    "shard_mode": ("distributed", "shard_mode"),
}

_C = TypeVar("_C")
_PLANES = ("axial", "coronal", "sagittal")


def _integer(name: str, value: Any, lo: int | None = None) -> int:
    """``value`` as an int when it is a whole number (not a bool, str or fraction), else ``LoaderConfigError``."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LoaderConfigError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, numbers.Integral):
        whole = int(value)
    elif float(value).is_integer():
        whole = int(float(value))
    else:
        raise LoaderConfigError(f"{name} must be a whole number, got {value!r}")
    if lo is not None and whole < lo:
        raise LoaderConfigError(f"{name} must be >= {lo}, got {value!r}")
    return whole


def _fraction(name: str, value: Any, lo: float, hi: float, *, open_hi: bool = False) -> float:
    import math
    import numbers

    span = f"[{lo}, {hi}{')' if open_hi else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise LoaderConfigError(f"{name} must be a finite number in {span}, got {value!r}")
    v = float(value)
    if v < lo or v > hi or (open_hi and v >= hi):
        raise LoaderConfigError(f"{name} must be in {span}, got {value!r}")
    return v


def _sampler(value: Any) -> Any:
    import math

    if isinstance(value, str):
        if value not in ("uniform", "foreground"):
            raise LoaderConfigError(f"unknown sampler {value!r}: use 'uniform', 'foreground' or a ratio mapping")
        return value
    if isinstance(value, Mapping):
        try:
            weights = {int(k): float(w) for k, w in value.items()}
        except (TypeError, ValueError):
            weights = {}
        if not weights or any(not math.isfinite(w) or w < 0 for w in weights.values()) or not any(weights.values()):
            raise LoaderConfigError(
                "sampler ratios must be a non-empty {label value: weight} mapping of finite weights >= 0, "
                f"not all 0; got {dict(value)!r}"
            )
        return value
    raise LoaderConfigError(f"unknown sampler {value!r}: use 'uniform', 'foreground' or a ratio mapping")


def _apply(config: _C | None, default: _C, flat: dict[str, Any], what: str) -> _C:
    if config is None:
        # the ignore below: _C is always one of the config dataclasses
        return dataclasses.replace(default, **flat) if flat else default  # type: ignore[type-var]
    if flat:
        clash = sorted(flat)
        raise LoaderArgumentError(f"give {clash} either as keywords or inside {what}=, not both")
    return config


def resolve(
    flat: Mapping[str, Any],
    *,
    patch: PatchConfig | None = None,
    cache: CacheConfig | None = None,
    loader: LoaderConfig | None = None,
    distributed: DistributedConfig | None = None,
    defaults: Mapping[str, Any] | None = None,
    caller: str = "loader",
) -> tuple[PatchConfig, CacheConfig, LoaderConfig, DistributedConfig]:
    """The four configs from explicit config objects and flat (seed) keywords.

    ``defaults``: per-factory defaults of flat keywords (e.g. validation's ``batch_size=1``), used
    only for configs not given as objects. Unknown keywords raise ``TypeError`` naming ``caller``.
    """
    unknown = sorted(set(flat) - set(FLAT))
    if unknown:
        raise LoaderArgumentError(f"{caller}: unexpected arguments {unknown}")
    groups: dict[str, dict[str, Any]] = {"patch": {}, "cache": {}, "loader": {}, "distributed": {}}
    given = {"patch": patch, "cache": cache, "loader": loader, "distributed": distributed}
    for key, value in (defaults or {}).items():
        group, fld = FLAT[key]
        if given[group] is None and key not in flat:
            groups[group][fld] = value
    explicit: dict[str, dict[str, Any]] = {g: {} for g in groups}
    for key, value in flat.items():
        group, fld = FLAT[key]
        explicit[group][fld] = value
    out = []
    for group, cls in (
        ("patch", PatchConfig),
        ("cache", CacheConfig),
        ("loader", LoaderConfig),
        ("distributed", DistributedConfig),
    ):
        cfg = given[group]
        if cfg is not None and not isinstance(cfg, cls):
            raise LoaderArgumentError(f"{caller}: {group}= must be a {cls.__name__}, got {type(cfg).__name__}")
        out.append(_apply(cfg, cls(**groups[group]), explicit[group], group))
    # the ignore below: out holds one config of each class, in this order
    return out[0], out[1], out[2], out[3]  # type: ignore[return-value]
