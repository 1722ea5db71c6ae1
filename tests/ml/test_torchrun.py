"""REAL ``torchrun`` runs of ``examples/train_ddp.py`` (gloo, CPU) on a tiny coded store.

* one node: ``torchrun --standalone --nproc-per-node=2``, then a resume on one process from the
  checkpoint taken at the end of the last epoch (the next epoch runs whole);
* two nodes: two torchrun agents (``--nnodes=2 --nproc-per-node=2``, c10d rendezvous on
  127.0.0.1), as two subprocesses on this host, stopped mid-epoch and resumed on ONE process with
  ``python -m torch.distributed.run`` (the module spelling of torchrun).

Each rank records what it trained on (``--record``): every sample exactly once per epoch across
all ranks, the very samples and patches the same loader gives in this process for that rank and
world, new patches each epoch, and voxels that decode to the sample's own subject and origin (the
store's values encode both), also when served from the shared-memory cache. That cache is one per
node: the ranks of one torchrun agent share one directory, the two agents ("nodes") on this one
host never share one, and every directory is gone when the run ends. The node grouping and its
failure paths are also checked without torchrun (two spawned gloo ranks, and in this process).
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as tmp_mp

from radiobject import RadiObject
from radiobject.ml.cache import SharedMemoryCache
from radiobject.ml.distributed import create_distributed_dataloader, node_shared_cache, set_epoch
from radiobject.ml.distributed_cache import _join
from tests.ml._stores import decode_origin, make_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "train_ddp.py"
TORCHRUN = Path(sys.executable).with_name("torchrun")
N_SUBJECTS = 8  # divisible by every world size used (4, 2, 1): "pad" adds nothing, exactly once holds
SHAPE = (16, 16, 16)
PATCH = 8
SUBJECTS = {f"sub-{i:02d}" for i in range(N_SUBJECTS)}


def _example():
    spec = importlib.util.spec_from_file_location("train_ddp_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if Path("/sys/class/net/lo").exists():  # every "node" is on this host: gloo talks over loopback
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def _launch(cmds: list[list[str]], logs: Path, limit: float = 150.0) -> None:
    """Start ``cmds`` together (each in its own session), wait for all within ``limit`` seconds.

    A failing agent leaves the others 10 s to fail on their own; then, as on a timeout, every
    process group still running is killed and the test fails with the logs' tails.
    """
    procs = []
    for i, cmd in enumerate(cmds):
        out = open(logs / f"launch-{i}.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((proc, out))
    deadline = time.monotonic() + limit
    try:
        while any(p.poll() is None for p, _ in procs) and time.monotonic() < deadline:
            if any(p.returncode not in (None, 0) for p, _ in procs):
                deadline = min(deadline, time.monotonic() + 10)
            time.sleep(0.2)
    finally:
        for proc, out in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the agent and the workers it started
                proc.wait()
            out.close()
    rcs = [p.returncode for p, _ in procs]
    if rcs != [0] * len(procs):
        tails = "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(logs.glob("launch-*.log")))
        pytest.fail(f"torchrun exit codes {rcs} (limit {limit} s):\n{tails}")


def _train_args(store: str, record: Path, *extra: str) -> list[str]:
    return [str(EXAMPLE), "--store", store, "--patch", str(PATCH), "--batch-size", "1", "--record", str(record), *extra]


def _records(directory: Path, world: int) -> list[dict]:
    ranks = [json.loads((directory / f"rank-{r}.json").read_text()) for r in range(world)]
    assert [(d["rank"], d["world"]) for d in ranks] == [(r, world) for r in range(world)]
    return ranks


def _samples(rank: dict, epoch: int) -> list[list]:
    """``[subject, origin]`` of each sample ``rank`` trained on in ``epoch``, in order."""
    return [[s[1], s[2]] for s in rank["samples"] if s[0] == epoch]


def _reference(store: str, world: int, epochs: tuple[int, ...]) -> dict[tuple[int, int], list[list]]:
    """What each rank's loader yields (``[subject, origin]``) for ``world``, built in this process."""
    radi, options = RadiObject(store), _example().loader_options(PATCH, 1)
    out = {}
    for r in range(world):
        loader = create_distributed_dataloader(radi, rank=r, world_size=world, stage="train", **options)
        for epoch in epochs:
            set_epoch(loader, epoch)
            out[r, epoch] = [[b["subject_id"][0], b["patch_origin"][0].tolist()] for b in loader]
    return out


def _check_voxels(ranks: list[dict]) -> None:
    """The first T1w voxel of each patch decodes to the sample's subject and patch origin."""
    for rank in ranks:
        for _, sid, origin, _, voxel in rank["samples"]:
            assert decode_origin(voxel) == (int(sid.split("-")[1]), tuple(origin)), (rank["rank"], sid, origin)


def _once(samples: list[list]) -> None:
    assert Counter(sid for sid, _ in samples) == Counter(dict.fromkeys(SUBJECTS, 1))


def _check_node_caches(ranks: list[dict], nodes: int) -> None:
    """One shared-memory directory per torchrun agent (node), shared by its ranks, removed at the end."""
    by_node: dict[str, set[str]] = {}
    for rank in ranks:
        assert rank["cache"]["type"] == "SharedMemoryCache"
        by_node.setdefault(rank["env"]["GROUP_RANK"], set()).add(rank["cache"]["path"])
    assert len(by_node) == nodes and all(len(paths) == 1 for paths in by_node.values())
    paths = [next(iter(p)) for p in by_node.values()]
    assert len(set(paths)) == nodes  # two "nodes" on one host: never one directory
    assert not any(Path(p).exists() for p in paths)  # each removed by its node's leader at exit
    assert sum(rank["cache"]["hits"] for rank in ranks) > 0  # the cache served reads


# ------------------------------------------------- node grouping, without torchrun
def test_node_shared_cache_without_a_process_group_is_private(tmp_path):
    cache = node_shared_cache(1 << 20, root=tmp_path)
    assert isinstance(cache, SharedMemoryCache) and cache.path.parent == tmp_path
    assert cache.name.startswith("radiobject-cache-") and cache.path.is_dir()
    cache.close()
    assert not cache.path.exists()


def test_a_rank_joins_only_an_existing_private_directory(tmp_path):
    leader = SharedMemoryCache(1 << 20, root=tmp_path)
    leader.put("k", np.arange(4.0))
    peer = _join(leader.path, 1 << 20, 0, "host|0", tmp_path)
    assert peer.path == leader.path and np.array_equal(peer.get("k"), np.arange(4.0))
    with pytest.warns(RuntimeWarning, match="does not exist here"):
        alone = _join(tmp_path / "radiobject-cache-elsewhere", 1 << 20, 0, "host|0", tmp_path)
    assert alone.path != leader.path and not (tmp_path / "radiobject-cache-elsewhere").exists()
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    with pytest.warns(RuntimeWarning, match="private"):
        other = _join(open_dir, 1 << 20, 0, "host|0", tmp_path)
    assert other.path not in (open_dir, leader.path)
    for cache in (alone, other, leader):
        cache.close()


def _grouping_worker(rank: int, port: int, out: str, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
    try:
        os.environ.pop("GROUP_RANK", None)
        one = node_shared_cache(1 << 20, root=root)  # one host, no torchrun agent: one node
        os.environ["GROUP_RANK"] = str(rank)  # as two torchrun agents on this host: two nodes
        two = node_shared_cache(1 << 20, root=root)
        os.environ.pop("GROUP_RANK")  # one node again: rank 0 creates, rank 1 waits for it
        try:
            node_shared_cache(1 << 62, root=root)  # more than /dev/shm holds: the leader fails
            failure = ""
        except ValueError as exc:
            failure = f"{exc} {getattr(exc, '__notes__', [])}"
        Path(out, f"rank-{rank}.json").write_text(
            json.dumps({"one": str(one.path), "two": str(two.path), "failure": failure})
        )
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ranks_group_by_host_and_torchrun_agent(tmp_path):
    ctx = tmp_mp.spawn(_grouping_worker, args=(_free_port(), str(tmp_path), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 90
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("spawned ranks did not finish within 90 s")
    r0, r1 = (json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1))
    assert r0["one"] == r1["one"]  # same host, same agent: one directory
    assert r0["two"] != r1["two"]  # another agent: its own directory
    assert "exceeds" in r0["failure"] and "exceeds" in r1["failure"]  # every rank raises, none waits
    assert "raised by rank 0" in r1["failure"] and "raised by rank" not in r0["failure"]
    assert not any(tmp_path.glob("radiobject-cache-*"))  # each removed when its creator exited


# ------------------------------------------------------------------ real torchrun
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torchrun_standalone_two_processes(tmp_path):
    store = make_store(tmp_path / "store", "zarr", n=N_SUBJECTS, shape=SHAPE).uri
    rec, ckpt = tmp_path / "rec", tmp_path / "ckpt.pt"
    extra = ("--epochs", "2", "--cache", "shared_memory", "--checkpoint", str(ckpt))
    _launch([[str(TORCHRUN), "--standalone", "--nproc-per-node=2", *_train_args(store, rec, *extra)]], tmp_path)
    ranks = _records(rec, 2)
    for r, rank in enumerate(ranks):
        assert rank["env"] == {
            "LOCAL_RANK": str(r),
            "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": "0",
            "GROUP_WORLD_SIZE": "1",
            "RANK": str(r),
            "WORLD_SIZE": "2",
        }
    ref = _reference(store, 2, (0, 1))
    for epoch in (0, 1):
        _once([s for rank in ranks for s in _samples(rank, epoch)])
        assert [_samples(rank, epoch) for rank in ranks] == [ref[r, epoch] for r in range(2)]
    origins = [{sid: str(o) for rank in ranks for sid, o in _samples(rank, e)} for e in (0, 1)]
    assert origins[0] != origins[1]  # new patches each epoch
    _check_voxels(ranks)
    _check_node_caches(ranks, nodes=1)

    # resume from a checkpoint taken at the end of epoch 1, on one process: epoch 2 whole, nothing more
    rec1 = tmp_path / "rec1"
    resume = ("--epochs", "3", "--checkpoint", str(ckpt), "--resume")
    _launch([[str(TORCHRUN), "--standalone", "--nproc-per-node=1", *_train_args(store, rec1, *resume)]], tmp_path)
    (single,) = _records(rec1, 1)
    assert {s[0] for s in single["samples"]} == {2}
    assert _samples(single, 2) == _reference(store, 1, (2,))[0, 2]
    _check_voxels([single])


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_torchrun_two_nodes_c10d_then_resume_on_one_process(tmp_path):
    store = make_store(tmp_path / "store", "zarr", n=N_SUBJECTS, shape=SHAPE).uri
    rec, ckpt, port, job = tmp_path / "rec", tmp_path / "ckpt.pt", _free_port(), uuid.uuid4().hex[:8]
    # world 4, 2 steps per epoch: the run stops after epoch 0 and the first step of epoch 1
    extra = ("--epochs", "2", "--steps", "3", "--checkpoint", str(ckpt), "--cache", "shared_memory")
    agent = [
        str(TORCHRUN),
        "--nnodes=2",
        "--nproc-per-node=2",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--rdzv-id={job}",
    ]
    _launch([[*agent, f"--node-rank={k}", *_train_args(store, rec, *extra)] for k in (0, 1)], tmp_path)
    ranks = _records(rec, 4)
    assert sorted((d["env"]["GROUP_RANK"], d["env"]["LOCAL_RANK"]) for d in ranks) == [
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("1", "1"),
    ]
    for rank in ranks:  # torchrun's numbering: node by node
        env = rank["env"]
        assert (env["WORLD_SIZE"], env["LOCAL_WORLD_SIZE"], env["GROUP_WORLD_SIZE"]) == ("4", "2", "2")
        assert rank["rank"] == 2 * int(env["GROUP_RANK"]) + int(env["LOCAL_RANK"])
    ref = _reference(store, 4, (0, 1))
    _once([s for rank in ranks for s in _samples(rank, 0)])
    assert [_samples(rank, 0) for rank in ranks] == [ref[r, 0] for r in range(4)]
    assert [_samples(rank, 1) for rank in ranks] == [ref[r, 1][:1] for r in range(4)]
    _check_voxels(ranks)
    _check_node_caches(ranks, nodes=2)

    # elastic resume of the unfinished epoch 1 on one process, with the module spelling of torchrun
    rec1 = tmp_path / "rec1"
    resume = ("--epochs", "2", "--checkpoint", str(ckpt), "--resume")
    module = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    _launch([[*module, *_train_args(store, rec1, *resume)]], tmp_path)
    (single,) = _records(rec1, 1)
    assert {s[0] for s in single["samples"]} == {1}  # only the rest of epoch 1
    before = [s for rank in ranks for s in _samples(rank, 1)]
    after = _samples(single, 1)
    assert len(before) == 4 and len(after) == N_SUBJECTS - 4
    _once(before + after)  # every sample of epoch 1 exactly once, across the two runs
    uninterrupted = {sid: o for r in range(4) for sid, o in ref[r, 1]}
    assert {sid: o for sid, o in before + after} == uninterrupted  # the same patches as without the stop
    assert uninterrupted != {sid: o for r in range(4) for sid, o in ref[r, 0]}  # new patches each epoch
    _check_voxels([single])
