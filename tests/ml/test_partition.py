"""Epoch order, rank sharding, mid-epoch and elastic resume, as pure functions (the one resume model)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from radiobject.ml.partition import (
    epoch_order,
    rank_indices,
    resume_state,
    samples_consumed,
    segment_streams,
    unseen,
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
        expected = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False, drop_last=drop_last))
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
        # the ignore below: an invalid mode on purpose
        rank_indices(np.arange(4), rank=0, world_size=2, mode="repeat")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="group_size"):
        segment_streams(10, seed=0, epoch=0, segments=[[2, 0]], group_size=3)


def _streams(n, segments, mode="pad", g=1, seed=0, epoch=0):
    return segment_streams(n, seed=seed, epoch=epoch, segments=segments, mode=mode, group_size=g)


@pytest.mark.parametrize("world,batch_size,steps", [(1, 4, 3), (2, 2, 5), (4, 3, 2)])
def test_mid_epoch_resume_same_world_continues_each_rank_exactly(world, batch_size, steps):
    full = _streams(53, [[world, 0]])
    pos = steps * batch_size
    resumed = _streams(53, [[world, pos]])
    for r in range(world):
        np.testing.assert_array_equal(resumed[r][pos:], full[r][pos:])


@pytest.mark.parametrize("mode", ["pad", "exact"])
def test_elastic_resume_sees_exactly_the_unseen_samples(mode):
    """Any (n, worlds, batch, steps), over up to three segments: every sample; no repeats but padding."""
    rng = np.random.default_rng(0)
    for _ in range(150):
        g = int(rng.integers(1, 4))
        n = g * int(rng.integers(1, 30))
        segs: list[list[int]] = []
        seen: list[int] = []
        for _k in range(int(rng.integers(1, 4))):
            w = int(rng.integers(1, 6))
            segs.append([w, 0])
            streams = _streams(n, segs, mode, g)
            longest = max(len(s) for s in streams)
            pos = int(rng.integers(0, longest + 1))
            segs[-1][1] = pos
            seen += [int(v) for s in streams for v in s[:pos]]
        streams = _streams(n, segs, mode, g)
        rest = [int(v) for s in streams for v in s[segs[-1][1] :]]
        assert set(seen) | set(rest) == set(range(n)) and not set(rest) & set(seen) - set(rest)
        if mode == "exact":
            assert sorted(seen + rest) == list(range(n))  # every sample exactly once in the epoch
        else:  # padding repeats at most world - 1 samples per segment
            assert len(seen) + len(rest) - n <= sum(w - 1 for w, _ in segs) * g
        state = resume_state(n, seed=0, epoch=0, segments=segs, mode=mode, group_size=g)
        assert state["sample_in_epoch"] == len(seen) and state["world_size"] == segs[-1][0]


def test_unseen_keeps_step_order_and_drops_repeats():
    streams = [np.array([0, 2, 4, 0]), np.array([1, 3, 5, 1])]
    assert unseen(streams, 1).tolist() == [2, 3, 4, 5]
    assert unseen(streams, 4).size == 0


def test_group_streams_keep_a_subjects_samples_together():
    streams = _streams(12, [[2, 0]], g=3)
    for s in streams:
        assert all(s[k] % 3 == 0 and s[k : k + 3].tolist() == list(range(s[k], s[k] + 3)) for k in range(0, len(s), 3))
    assert samples_consumed(12, seed=0, epoch=0, segments=[[2, 3]], group_size=3) == 6


def test_state_is_a_small_plain_dict():
    state = resume_state(10_000, seed=3, epoch=7, segments=[[4, 100], [2, 50]])
    assert set(state) == {
        "epoch",
        "seed",
        "shuffle",
        "mode",
        "num_samples",
        "group_size",
        "world_size",
        "sample_in_epoch",
        "segments",
    }
    assert state["world_size"] == 2 and state["sample_in_epoch"] == 4 * 100 + 2 * 50
    assert all(isinstance(v, (int, bool, str, list)) for v in state.values())
