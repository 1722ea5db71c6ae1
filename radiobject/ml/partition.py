"""Epoch order, sharding and resume as pure functions: the one resume model of ``radiobject.ml``.

Model (MosaicML Streaming's, with ``torch.utils.data.DistributedSampler``'s sharding so DDP code and
Lightning keep their assumptions):

1. the *order* of an epoch permutes *groups* (a subject's ``patches_per_volume`` consecutive
   samples; groups of one otherwise) and depends only on ``(seed, epoch)`` — never on the world;
2. rank ``r`` of ``world`` takes groups ``r, r + world, ...`` (:func:`rank_indices`): training
   equalises shards by ``"pad"`` (repeat from the start, like DistributedSampler) or ``"drop"``;
   validation uses ``"exact"`` (every sample once, shards may differ by one);
3. ranks advance in lockstep, so after ``k`` steps of ``batch_size`` every rank has consumed the
   first ``position = k * batch_size`` samples of its stream.

The resume state is a small dict (:func:`resume_state`)::

    {"epoch", "seed", "shuffle", "mode", "num_samples", "group_size",
     "world_size", "sample_in_epoch", "segments": [[world_size, position], ...]}

``segments`` records the epoch's run so far: one ``[world, position]`` per stretch run on one world
size (a new segment starts only when a resume changes the world size). :func:`segment_streams`
rebuilds every rank's stream of the last segment from it: a same-world resume continues each rank
exactly where it stopped (padding included); an elastic resume re-shards exactly the samples no rank
had consumed (:func:`unseen`) over the new world. ``sample_in_epoch`` is the number of samples
consumed by all ranks together (informational; the segments are what resume reads).

A bad argument (a negative epoch, a rank outside the world, an unknown mode) raises
:class:`~radiobject.ml.errors.LoaderConfigError` (a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, NotRequired, TypedDict, Unpack

import numpy as np

from radiobject.ml.errors import LoaderConfigError

__all__ = [
    "EpochRun",
    "ShardMode",
    "epoch_order",
    "rank_indices",
    "resume_state",
    "samples_consumed",
    "segment_streams",
    "unseen",
]

#: How rank shards are equalised: "pad" and "drop" for training, "exact" for validation.
ShardMode = Literal["pad", "drop", "exact"]
_ORDER_DOMAIN = 0x4F524452  # separates epoch-order streams from ml.sampling.item_rng streams


def _check(name: str, value: int, lo: int = 0) -> int:
    value = int(value)
    if value < lo:
        raise LoaderConfigError(f"{name} must be >= {lo}, got {value}")
    return value


def epoch_order(num_samples: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The global order of one epoch: a permutation of ``range(num_samples)`` (int64).

    Depends only on ``(seed, epoch)``; a new permutation each epoch. ``shuffle=False`` gives
    ``arange`` (validation / inference order).
    """
    n = _check("num_samples", num_samples)
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    ss = np.random.SeedSequence(_check("seed", seed), spawn_key=(_ORDER_DOMAIN, _check("epoch", epoch)))
    return np.random.default_rng(ss).permutation(n).astype(np.int64)


def rank_indices(
    order: np.ndarray,
    *,
    rank: int,
    world_size: int,
    mode: ShardMode = "pad",
) -> np.ndarray:
    """Rank ``rank``'s share of ``order``: positions ``rank::world_size`` after equalising.

    * ``"pad"``: append the start of ``order`` (cyclically) until the length divides by the world
      size; every rank gets ``ceil(len / world)``; at most ``world - 1`` duplicates.
    * ``"drop"``: cut the tail to a multiple of the world size; every rank gets ``len // world``.
    * ``"exact"``: no padding, no dropping; shard lengths differ by at most one and their union is
      ``order`` with each sample exactly once.
    """
    world = _check("world_size", world_size, 1)
    r = _check("rank", rank)
    if r >= world:
        raise LoaderConfigError(f"rank {r} out of range for world_size {world}")
    order = np.asarray(order, dtype=np.int64)
    n = order.size
    if mode == "pad":
        total = -(-n // world) * world
        if total > n and n > 0:
            order = np.concatenate([order, np.resize(order, total - n)])
    elif mode == "drop":
        order = order[: (n // world) * world]
    elif mode != "exact":
        raise LoaderConfigError(f"mode must be 'pad', 'drop' or 'exact', got {mode!r}")
    return order[r::world]


def _expand(groups: np.ndarray, group_size: int) -> np.ndarray:
    if group_size == 1:
        return groups
    return (groups[:, None] * group_size + np.arange(group_size, dtype=np.int64)).reshape(-1)


def unseen(streams: Sequence[np.ndarray], position: int) -> np.ndarray:
    """Samples of ``streams`` that no rank consumed in its first ``position``, in step order, once each.

    Step order: position ``p`` of rank 0, of rank 1, ... then ``p + 1``; a sample that was seen
    (or appears twice, as padding does) is kept only at its first unseen occurrence.
    """
    pos = _check("position", position)
    seen: set[int] = set()
    for s in streams:
        seen.update(np.asarray(s)[:pos].tolist())
    out: list[int] = []
    length = max((len(s) for s in streams), default=0)
    for p in range(pos, length):
        for s in streams:
            if p < len(s):
                v = int(s[p])
                if v not in seen:
                    seen.add(v)
                    out.append(v)
    return np.asarray(out, dtype=np.int64)


class EpochRun(TypedDict):
    """The keywords naming one epoch's run, taken by :func:`segment_streams`,
    :func:`samples_consumed` and :func:`resume_state` after ``num_samples``.

    Attributes:
        seed: the run's seed (the epoch order depends only on ``(seed, epoch)``).
        epoch: the epoch.
        segments: the epoch's ``[[world_size, position], ...]`` (see the module docstring).
        mode: a :data:`ShardMode` (default ``"pad"``).
        shuffle: permute the epoch (default True; False: ``arange`` order).
        group_size: samples per group, a subject's consecutive patches (default 1).
    """

    seed: int
    epoch: int
    segments: Sequence[Sequence[int]]
    mode: NotRequired[ShardMode]
    shuffle: NotRequired[bool]
    group_size: NotRequired[int]


@dataclass(frozen=True)
class _Run:
    """An :class:`EpochRun` with its defaults, and ``num_samples``."""

    num_samples: int
    seed: int
    epoch: int
    segments: Sequence[Sequence[int]]
    mode: ShardMode = "pad"
    shuffle: bool = True
    group_size: int = 1

    def streams(self) -> Iterator[list[np.ndarray]]:
        """Every rank's full stream in each segment, segment by segment."""
        g = _check("group_size", self.group_size, 1)
        if _check("num_samples", self.num_samples) % g:
            raise LoaderConfigError(f"num_samples={self.num_samples} is not a multiple of group_size={g}")
        if not self.segments:
            raise LoaderConfigError("segments must name at least one [world_size, position]")
        groups = epoch_order(self.num_samples // g, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        world = _check("world_size", self.segments[0][0], 1)
        streams = [_expand(rank_indices(groups, rank=r, world_size=world, mode=self.mode), g) for r in range(world)]
        yield streams
        for (_, position), (new_world, _) in zip(self.segments[:-1], self.segments[1:], strict=True):
            rest = unseen(streams, int(position))
            w = _check("world_size", new_world, 1)
            streams = [rank_indices(rest, rank=r, world_size=w, mode=self.mode) for r in range(w)]
            yield streams

    def consumed(self) -> int:
        if not self.segments:
            return 0
        return sum(
            min(int(seg[1]), len(s))
            for seg, streams in zip(self.segments, self.streams(), strict=True)
            for s in streams
        )


def segment_streams(num_samples: int, **run: Unpack[EpochRun]) -> list[np.ndarray]:
    """Every rank's full stream (sample indices) in the last of ``segments``.

    ``run``: the keywords of :class:`EpochRun`. ``segments`` is the epoch's
    ``[[world_size, position], ...]`` (see the module docstring); the first segment shards the
    epoch order by groups, each later one re-shards the samples unseen at the end of the one
    before (sample by sample: a subject's patches may then be split over ranks). Rank ``r``
    yields ``streams[r][position:]`` of the last segment.
    """
    *_, last = _Run(num_samples, **run).streams()
    return last


def samples_consumed(num_samples: int, **run: Unpack[EpochRun]) -> int:
    """Samples (with padding repeats) all ranks have consumed in the epoch so far: ``sample_in_epoch``
    (``run``: the keywords of :class:`EpochRun`)."""
    return _Run(num_samples, **run).consumed()


def resume_state(num_samples: int, **run: Unpack[EpochRun]) -> dict[str, Any]:
    """The state dict of an epoch run along ``segments`` (what samplers and loaders save;
    ``run``: the keywords of :class:`EpochRun`)."""
    r = _Run(num_samples, **run)
    segs = [[int(w), int(p)] for w, p in r.segments]
    return {
        "epoch": int(r.epoch),
        "seed": int(r.seed),
        "shuffle": bool(r.shuffle),
        "mode": r.mode,
        "num_samples": int(num_samples),
        "group_size": int(r.group_size),
        "world_size": segs[-1][0],
        "sample_in_epoch": replace(r, segments=segs).consumed(),
        "segments": segs,
    }
