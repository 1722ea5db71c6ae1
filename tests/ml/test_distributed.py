"""Distributed sampling: a REAL 2-process DDP run (gloo on 127.0.0.1) plus in-process sharding / resume checks.

The DDP run checks: every training sample once per epoch across ranks, validation exact-once with
uneven shards, and a mid-epoch resume on the same world size inside DDP. Resumes on other world
sizes (1 and 3) continue that very run's saved state in this process.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
from collections import Counter
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as tmp_mp
from torch.utils.data import DistributedSampler

from radiobject.ml.distributed import RadiSampler, create_distributed_dataloader, set_epoch
from tests.ml._stores import make_store

SHAPE = (12, 12, 8)
N_TRAIN = 6  # divisible by 2: with "pad" every sample exactly once per epoch
TRAIN_KW = dict(modalities=["T1w"], label="seg", patch_size=(4, 4, 4), batch_size=1, seed=9)


# ------------------------------------------------------------------ in-process
class _Sized:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _shards(n, world, **kw):
    out = []
    for r in range(world):
        s = RadiSampler(_Sized(n), world, r, **kw)
        s.set_epoch(1)
        out.append([i for _, i in s])
    return out


def test_sampler_is_a_distributed_sampler_with_its_interface():
    s = RadiSampler(_Sized(10), 2, 1, seed=4)
    assert isinstance(s, DistributedSampler)
    assert (s.num_replicas, s.rank, s.epoch) == (2, 1, 0)
    s.set_epoch(3)
    assert s.epoch == 3 and all(e == 3 for e, _ in s)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_pad_drop_exact(world):
    n = 10
    pad = _shards(n, world, mode="pad")
    assert len({len(s) for s in pad}) == 1
    flat = [i for s in pad for i in s]
    assert set(flat) == set(range(n)) and len(flat) - n < world
    drop = _shards(n, world, mode="drop")
    flat = [i for s in drop for i in s]
    assert len(flat) == len(set(flat)) == (n // world) * world
    exact = _shards(n, world, mode="exact", shuffle=False)
    flat = sorted(i for s in exact for i in s)
    assert flat == list(range(n)) and max(map(len, exact)) - min(map(len, exact)) <= 1


def test_group_size_keeps_a_subjects_patches_on_one_rank():
    shards = _shards(12, 2, group_size=3)
    for s in shards:
        groups = [s[k : k + 3] for k in range(0, len(s), 3)]
        assert all(g[0] % 3 == 0 and g == list(range(g[0], g[0] + 3)) for g in groups)
    assert sorted(i for s in shards for i in s) == list(range(12))


def _consume(world, n, steps, bs=1, mode="pad", state=None, group_size=1):
    """Run `steps` lockstep batches on every rank; returns (consumed, state of rank 0)."""
    samplers = [RadiSampler(_Sized(n), world, r, seed=2, mode=mode, group_size=group_size) for r in range(world)]
    for s in samplers:
        if state is not None:
            s.load_state_dict(state)
        else:
            s.set_epoch(5)
    streams = [[i for _, i in s] for s in samplers]
    used = [x for st in streams for x in st[: steps * bs]]
    rest = [x for st in streams for x in st[steps * bs :]]
    return used, rest, samplers[0].state_dict(steps=steps, batch_size=bs)


@pytest.mark.parametrize("mode", ["pad", "exact"])
@pytest.mark.parametrize("new_world", [1, 2, 3, 5])
@pytest.mark.parametrize("group_size", [1, 3])
def test_elastic_resume_sees_exactly_the_unseen_samples(mode, new_world, group_size):
    n = 7 * group_size
    used, _, state = _consume(2, n, steps=2, bs=2, mode=mode, group_size=group_size)
    _, rest, _ = _consume(
        new_world, n, steps=0, mode="exact" if mode == "exact" else "pad", state=state, group_size=group_size
    )
    if new_world == 2:  # same world size: exactly the uninterrupted remainder (its padding included)
        assert rest == _consume(2, n, steps=2, bs=2, mode=mode, group_size=group_size)[1]
        return
    assert set(used) | set(rest) == set(range(n)) and not set(used) & set(rest)  # unseen = rest, exactly
    if mode == "exact":
        assert sorted(used + rest) == list(range(n))  # every sample exactly once in the epoch
    else:  # padding may repeat a few samples (DistributedSampler's rule): < world per shard set
        assert len(used) - len(set(used)) < 2 and len(rest) - len(set(rest)) < new_world


def test_same_world_resume_continues_each_rank_exactly():
    full = _consume(2, 9, steps=0)[1]
    _, _, state = _consume(2, 9, steps=3)
    s = [RadiSampler(_Sized(9), 2, r, seed=2) for r in range(2)]
    for x in s:
        x.load_state_dict(state)
    ref = [RadiSampler(_Sized(9), 2, r, seed=2) for r in range(2)]
    for x in ref:
        x.set_epoch(5)
    for a, b in zip(s, ref, strict=True):
        assert [i for _, i in a] == [i for _, i in b][3:]
    assert sorted(full) == sorted(_consume(2, 9, steps=0)[1])


# ------------------------------------------------------------------ real DDP
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _key(b, k):
    return [b["subject_id"][k], b["patch_origin"][k].tolist()]


def _ddp_worker(rank: int, world: int, port: int, train_uri: str, val_uri: str, out_dir: str) -> None:
    from radiobject import RadiObject

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        radi, val_radi = RadiObject(train_uri), RadiObject(val_uri)
        loader = create_distributed_dataloader(radi, rank=rank, world_size=world, stage="train", **TRAIN_KW)
        epochs = {}
        for epoch in range(2):
            set_epoch(loader, epoch)
            epochs[epoch] = [_key(b, 0) for b in loader]
        # mid-epoch state after 1 step of epoch 2, then a resumed loader on the same world size
        set_epoch(loader, 2)
        it = iter(loader)
        first = [_key(next(it), 0)]
        state = loader.state_dict()
        resumed = create_distributed_dataloader(radi, rank=rank, world_size=world, stage="train", **TRAIN_KW)
        resumed.load_state_dict(state)
        rest = [_key(b, 0) for b in resumed]
        val = create_distributed_dataloader(
            val_radi, rank=rank, world_size=world, stage="val", modalities=["T1w"], label="seg", batch_size=1
        )
        val_ids = [b["subject_id"][0] for b in val]
        gathered: list = [None] * world
        dist.all_gather_object(
            gathered,
            {
                "epochs": epochs,
                "first": first,
                "rest": rest,
                "val": val_ids,
                "state": state,
                "sampler": type(loader.sampler).__name__,
            },
        )
        if rank == 0:
            Path(out_dir, "result.json").write_text(json.dumps(gathered))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawn(fn, args, nprocs: int, limit: float = 120.0) -> None:
    ctx = tmp_mp.spawn(fn, args=args, nprocs=nprocs, join=False)
    deadline = time.monotonic() + limit
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"DDP run did not finish within {limit} s")


@pytest.mark.timeout(240)
def test_real_ddp_two_ranks_gloo(tmp_path):
    train = make_store(tmp_path / "train", "zarr", n=N_TRAIN, shape=SHAPE)
    val = make_store(tmp_path / "val", "zarr", n=5, shape=SHAPE)  # odd: uneven validation shards
    _spawn(_ddp_worker, (2, _free_port(), train.uri, val.uri, str(tmp_path)), nprocs=2)
    ranks = json.loads((tmp_path / "result.json").read_text())
    assert [r["sampler"] for r in ranks] == ["RadiSampler", "RadiSampler"]
    subjects = {f"sub-{i:02d}" for i in range(N_TRAIN)}
    for epoch in ("0", "1"):
        seen = [tuple(map(str, k)) for r in ranks for k in r["epochs"][epoch]]
        ids = Counter(k[0] for k in seen)
        assert ids == Counter({s: 1 for s in subjects})  # every training sample exactly once, across ranks
    p0 = [str(k[1]) for r in ranks for k in r["epochs"]["0"]]
    p1 = [str(k[1]) for r in ranks for k in r["epochs"]["1"]]
    assert p0 != p1
    # validation: exact once, uneven shards (3 + 2), nothing padded
    val_ids = [v for r in ranks for v in r["val"]]
    assert sorted(val_ids) == [f"sub-{i:02d}" for i in range(5)]
    assert sorted(len(r["val"]) for r in ranks) == [2, 3]
    # same-world resume inside DDP: first step + resumed rest = each rank's uninterrupted stream
    state = ranks[0]["state"]
    assert state == ranks[1]["state"] and state["segments"] == [[2, 1]] and state["epoch"] == 2
    assert state["sample_in_epoch"] == 2 and state["world_size"] == 2
    epoch2 = {r: ranks[r]["first"] + ranks[r]["rest"] for r in range(2)}
    ids2 = Counter(k[0] for r in range(2) for k in epoch2[r])
    assert ids2 == Counter({s: 1 for s in subjects})

    # changed world size: resume the DDP run's state on 1 rank and on 3 ranks (explicit rank/world)
    seen_first = {tuple(map(str, k)) for r in range(2) for k in ranks[r]["first"]}
    full = {tuple(map(str, k)) for r in range(2) for k in epoch2[r]}
    for new_world in (1, 3):
        rest = []
        for rank in range(new_world):
            loader = create_distributed_dataloader(train, rank=rank, world_size=new_world, stage="train", **TRAIN_KW)
            loader.load_state_dict(state)
            rest += [tuple(map(str, _key(b, 0))) for b in loader]
        rest_set = set(rest)
        assert rest_set == full - seen_first  # exactly the unseen samples, with the same patches
        assert len(rest) - len(rest_set) < new_world  # only padding of the new shards repeats
