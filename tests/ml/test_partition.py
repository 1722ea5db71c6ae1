"""Epoch order, rank/worker sharding, mid-epoch and elastic resume, as pure functions."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    get_worker_info,
)

from radiobject.ml.partition import (
    consumed_after,
    epoch_order,
    rank_indices,
    remaining_order,
    shard_indices,
    worker_indices,
)


def test_epoch_order_is_a_reproducible_permutation_new_each_epoch():
    a = epoch_order(100, seed=3, epoch=0)
    assert sorted(a.tolist()) == list(range(100)) and a.dtype == np.int64
    np.testing.assert_array_equal(a, epoch_order(100, seed=3, epoch=0))
    orders = {epoch_order(100, seed=3, epoch=e).tobytes() for e in range(10)}
    assert len(orders) == 10
    assert not np.array_equal(a, epoch_order(100, seed=4, epoch=0))
    assert epoch_order(5, seed=0, epoch=0, shuffle=False).tolist() == [0, 1, 2, 3, 4]
    assert epoch_order(0, seed=0, epoch=0).size == 0


@pytest.mark.parametrize("n,world", [(10, 3), (12, 4), (7, 8), (1, 2), (0, 2)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_rank_shards_match_torch_distributed_sampler(n, world, drop_last):
    """Same semantics as DistributedSampler over the same base order (shuffle=False there)."""
    mode = "drop" if drop_last else "pad"
    for rank in range(world):
        expected = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False,
                                           drop_last=drop_last))
        got = rank_indices(np.arange(n), rank=rank, world_size=world, mode=mode).tolist()
        assert got == expected, (rank, got, expected)


@pytest.mark.parametrize("n,world", [(10, 3), (101, 4), (3, 5), (64, 8)])
def test_training_pad_covers_every_sample_with_equal_shards(n, world):
    order = epoch_order(n, seed=1, epoch=2)
    shards = [rank_indices(order, rank=r, world_size=world, mode="pad") for r in range(world)]
    assert len({s.size for s in shards}) == 1
    counts = Counter(np.concatenate(shards).tolist())
    assert set(counts) == set(range(n))
    assert sum(c - 1 for c in counts.values()) == shards[0].size * world - n <= world - 1 + n


@pytest.mark.parametrize("n,world", [(10, 3), (101, 4), (3, 5), (0, 2)])
def test_validation_exact_once_with_uneven_shards(n, world):
    order = epoch_order(n, seed=1, epoch=0, shuffle=False)
    shards = [rank_indices(order, rank=r, world_size=world, mode="exact") for r in range(world)]
    allidx = np.concatenate(shards)
    assert sorted(allidx.tolist()) == list(range(n))  # every sample exactly once
    sizes = [s.size for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_drop_mode_drops_fewer_than_world():
    order = epoch_order(10, seed=0, epoch=0)
    shards = [rank_indices(order, rank=r, world_size=4, mode="drop") for r in range(4)]
    allidx = np.concatenate(shards)
    assert allidx.size == 8 and len(set(allidx.tolist())) == 8


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="rank"):
        rank_indices(np.arange(4), rank=2, world_size=2)
    with pytest.raises(ValueError, match="mode"):
        rank_indices(np.arange(4), rank=0, world_size=2, mode="repeat")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="worker"):
        worker_indices(np.arange(4), worker=2, num_workers=2)


@pytest.mark.parametrize("batch_size,num_workers", [(1, 2), (3, 2), (4, 3), (5, 1)])
def test_worker_shares_interleave_back_to_rank_order(batch_size, num_workers):
    mine = rank_indices(epoch_order(23, seed=0, epoch=1), rank=1, world_size=2)
    parts = [worker_indices(mine, worker=w, num_workers=num_workers, batch_size=batch_size)
             for w in range(num_workers)]
    batches = [[p[i:i + batch_size] for i in range(0, p.size, batch_size)] for p in parts]
    merged = [b for group in itertools.zip_longest(*batches) for b in group if b is not None]
    np.testing.assert_array_equal(np.concatenate(merged), mine)


class _Shards(IterableDataset):
    """An iterable dataset that shards with shard_indices, as the real one will."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size = n, batch_size

    def __iter__(self):
        info = get_worker_info()
        w, nw = (info.id, info.num_workers) if info else (0, 1)
        idx = shard_indices(self.n, seed=9, epoch=4, rank=0, world_size=2, worker=w,
                            num_workers=nw, batch_size=self.batch_size)
        return iter(idx.tolist())


def test_real_dataloader_with_two_workers_yields_the_rank_order():
    """What a 2-worker DataLoader hands to the training loop is exactly the rank's order."""
    ds = _Shards(n=29, batch_size=3)
    loader = DataLoader(ds, batch_size=3, num_workers=2, multiprocessing_context="fork")
    got = torch.cat(list(loader)).tolist()
    assert got == shard_indices(29, seed=9, epoch=4, rank=0, world_size=2).tolist()


def _run(n, *, world, batch_size, steps, consumed, seed=0, epoch=0, mode="pad"):
    """Simulate ``steps`` lockstep steps of ``world`` ranks from ``consumed``; return what each saw."""
    seen = []
    for r in range(world):
        share = shard_indices(n, seed=seed, epoch=epoch, rank=r, world_size=world,
                              consumed=consumed, mode=mode)
        seen.append(share[: steps * batch_size] if steps is not None else share)
    return seen


@pytest.mark.parametrize("world,batch_size,steps", [(1, 4, 3), (2, 2, 5), (4, 3, 2)])
def test_mid_epoch_resume_same_world_continues_each_rank_exactly(world, batch_size, steps):
    n = 53
    full = _run(n, world=world, batch_size=batch_size, steps=None, consumed=0)
    c = consumed_after(steps, batch_size=batch_size, world_size=world)
    resumed = _run(n, world=world, batch_size=batch_size, steps=None, consumed=c)
    for r in range(world):
        np.testing.assert_array_equal(resumed[r], full[r][steps * batch_size:])


@pytest.mark.parametrize("mode", ["pad", "exact"])
def test_elastic_resume_sees_exactly_the_unseen_samples(mode):
    """Any (n, old world, new world, batch, steps): before + after = every sample; no repeats."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 80))
        w_old, w_new = (int(x) for x in rng.integers(1, 7, size=2))
        bs = int(rng.integers(1, 5))
        shard_len = -(-n // w_old)
        steps = int(rng.integers(0, -(-shard_len // bs) + 1))
        before = _run(n, world=w_old, batch_size=bs, steps=steps, consumed=0, mode=mode)
        c = consumed_after(steps, batch_size=bs, world_size=w_old, shard_len=shard_len)
        after = _run(n, world=w_new, batch_size=bs, steps=None, consumed=c, mode=mode)
        seen_before = np.concatenate(before)
        seen_after = np.concatenate(after)
        # the seen set before the stop is exactly the first `c` positions of the global order
        order = epoch_order(n, seed=0, epoch=0)
        assert set(seen_before.tolist()) == set(order[: min(c, n)].tolist())
        unseen = set(range(n)) - set(seen_before.tolist())
        if mode == "exact":  # after resume: exactly the unseen samples, each once
            assert sorted(seen_after.tolist()) == sorted(unseen)
        else:  # every unseen sample, plus < w_new padding duplicates so shards stay equal
            assert unseen <= set(seen_after.tolist())
            assert seen_after.size - len(unseen) <= w_new - 1
            assert len({s.size for s in after}) == 1


def test_remaining_order_is_clamped_past_the_end():
    assert remaining_order(10, seed=0, epoch=0, consumed=12).size == 0
    np.testing.assert_array_equal(remaining_order(10, seed=0, epoch=0, consumed=4),
                                  epoch_order(10, seed=0, epoch=0)[4:])
    assert consumed_after(10, batch_size=4, world_size=2, start=6, shard_len=9) == 6 + 18
