"""Epoch order and sharding as pure functions: ``order = f(seed, epoch, rank, world, worker)``.

Model (the same as ``torch.utils.data.DistributedSampler``, so DDP code and Lightning keep their
assumptions):

1. the *global order* of an epoch is a permutation of ``range(num_samples)`` that depends only on
   ``(seed, epoch)`` — never on the world size;
2. rank ``r`` of ``world`` takes positions ``r, r + world, r + 2*world, ...`` (strided);
3. inside a rank, DataLoader worker ``w`` of ``W`` takes batches ``w, w + W, ...`` — the order in
   which a ``DataLoader`` hands batches back round-robin, so what the training loop receives is
   exactly the rank's order;
4. training equalises shards by ``"pad"`` (repeat from the start of the order, like
   DistributedSampler) or ``"drop"`` (drop the tail); validation uses ``"exact"``: every sample
   exactly once, shards may differ by one.

Because ranks advance in lockstep (each step consumes ``batch_size`` per rank), after ``k`` steps
the samples seen by *all* ranks together are exactly the first ``consumed = k * batch_size *
world`` positions of the global order. Resuming therefore needs only ``(seed, epoch, consumed)``:
:func:`remaining_order` is the unseen suffix, which is re-sharded for any new world size
(elastic resume) and, for the same world size, continues each rank exactly where it stopped.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = [
    "ShardMode",
    "consumed_after",
    "epoch_order",
    "rank_indices",
    "remaining_order",
    "shard_indices",
    "worker_indices",
]

#: How rank shards are equalised: "pad" and "drop" for training, "exact" for validation.
ShardMode = Literal["pad", "drop", "exact"]
_ORDER_DOMAIN = 0x4F524452  # separates epoch-order streams from ml.sampling.item_rng streams


def _check(name: str, value: int, lo: int = 0) -> int:
    value = int(value)
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
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


def remaining_order(
    num_samples: int, *, seed: int, epoch: int, consumed: int = 0, shuffle: bool = True
) -> np.ndarray:
    """The not-yet-seen part of the epoch's global order after ``consumed`` samples.

    ``consumed`` counts positions handed to the training loop by all ranks together (see
    :func:`consumed_after`); positions beyond ``num_samples`` (padding) are clamped, so the result
    never contains a padding duplicate of an already-seen sample.
    """
    c = _check("consumed", consumed)
    return epoch_order(num_samples, seed=seed, epoch=epoch, shuffle=shuffle)[c:]


def rank_indices(
    order: np.ndarray,
    *,
    rank: int,
    world_size: int,
    mode: ShardMode = "pad",
    pad_with: np.ndarray | None = None,
) -> np.ndarray:
    """Rank ``rank``'s share of ``order``: positions ``rank::world_size`` after equalising.

    * ``"pad"``: append the start of ``pad_with`` (default ``order``; cyclically) until the
      length divides by the world size; every rank gets ``ceil(len / world)``; at most
      ``world - 1`` duplicates per epoch. :func:`shard_indices` pads a resumed remainder from the
      start of the *full* epoch order, so a same-world resume repeats the very same padding.
    * ``"drop"``: cut the tail to a multiple of the world size; every rank gets ``len // world``.
    * ``"exact"``: no padding, no dropping; shard lengths differ by at most one and their union is
      ``order`` with each sample exactly once.
    """
    world = _check("world_size", world_size, 1)
    r = _check("rank", rank)
    if r >= world:
        raise ValueError(f"rank {r} out of range for world_size {world}")
    order = np.asarray(order, dtype=np.int64)
    n = order.size
    if mode == "pad":
        total = -(-n // world) * world
        source = order if pad_with is None else np.asarray(pad_with, dtype=np.int64)
        if total > n and source.size > 0:
            order = np.concatenate([order, np.resize(source, total - n)])
    elif mode == "drop":
        order = order[: (n // world) * world]
    elif mode != "exact":
        raise ValueError(f"mode must be 'pad', 'drop' or 'exact', got {mode!r}")
    return order[r::world]


def worker_indices(
    indices: np.ndarray, *, worker: int, num_workers: int, batch_size: int = 1
) -> np.ndarray:
    """Worker ``worker``'s share of a rank's ``indices``: batches ``worker::num_workers``.

    Batches are consecutive runs of ``batch_size`` (the last may be short). A ``DataLoader`` over
    an iterable dataset takes one batch from each worker in turn, so interleaving the workers'
    shares this way reproduces ``indices`` in order — the property mid-epoch resume relies on.
    """
    w = _check("worker", worker)
    nw = _check("num_workers", num_workers, 1)
    bs = _check("batch_size", batch_size, 1)
    if w >= nw:
        raise ValueError(f"worker {w} out of range for num_workers {nw}")
    indices = np.asarray(indices, dtype=np.int64)
    batch_of = np.arange(indices.size) // bs
    return indices[batch_of % nw == w]


def shard_indices(
    num_samples: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    num_workers: int = 1,
    batch_size: int = 1,
    consumed: int = 0,
    mode: ShardMode = "pad",
    shuffle: bool = True,
) -> np.ndarray:
    """Sample indices one DataLoader worker of one rank yields, in order; the full composition.

    ``remaining_order`` -> ``rank_indices`` (padding from the full epoch order) ->
    ``worker_indices``. With ``num_workers=1`` it is the rank's whole share (what a map-style
    ``Sampler.__iter__`` yields). Resuming with the same world size at a ``consumed`` reached by
    lockstep steps yields exactly the tail of what the uninterrupted run would have yielded.
    """
    full = epoch_order(num_samples, seed=seed, epoch=epoch, shuffle=shuffle)
    rest = full[_check("consumed", consumed):]
    mine = rank_indices(rest, rank=rank, world_size=world_size, mode=mode, pad_with=full)
    return worker_indices(mine, worker=worker, num_workers=num_workers, batch_size=batch_size)


def consumed_after(
    steps: int, *, batch_size: int, world_size: int, start: int = 0, shard_len: int | None = None
) -> int:
    """Global samples consumed after ``steps`` lockstep steps since a (re)start at ``start``.

    ``shard_len`` (the per-rank shard length since that start) caps the count at the end of the
    epoch, where the last batch may be short.
    """
    per_rank = _check("steps", steps) * _check("batch_size", batch_size, 1)
    if shard_len is not None:
        per_rank = min(per_rank, _check("shard_len", shard_len))
    return _check("start", start) + per_rank * _check("world_size", world_size, 1)
