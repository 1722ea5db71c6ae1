"""Thread limits applied inside real DataLoader worker processes."""

from __future__ import annotations

import os
import pickle

import numcodecs.blosc
import pytest
import torch
import zarr
from torch.utils.data import DataLoader, Dataset

from radiobject.ml.threads import (
    THREAD_ENV_VARS,
    limit_threads,
    make_worker_init_fn,
    tensorstore_context_spec,
    tiledb_config,
    worker_init_fn,
)


class _Probe(Dataset):
    """Reports the thread settings seen inside the worker process."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        return {
            "pid": os.getpid(),
            "torch": torch.get_num_threads(),
            "blosc": numcodecs.blosc.get_nthreads(),
            "zarr": zarr.config.get("threading.max_workers"),
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "tag": os.environ.get("_PROBE_TAG", ""),
        }


def _tag(worker_id: int) -> None:
    os.environ["_PROBE_TAG"] = f"w{worker_id}"


@pytest.mark.parametrize("init", [worker_init_fn, make_worker_init_fn(1, then=_tag)])
def test_worker_init_limits_threads_in_each_worker_only(init):
    parent = (torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), zarr.config.get("threading.max_workers"))
    loader = DataLoader(_Probe(), batch_size=None, num_workers=2, worker_init_fn=init, multiprocessing_context="fork")
    seen = list(loader)
    assert len({s["pid"] for s in seen}) == 2 and os.getpid() not in {s["pid"] for s in seen}
    assert all(s["torch"] == 1 and s["blosc"] == 1 and s["zarr"] == 1 and s["omp"] == "1" for s in seen), seen
    if init is not worker_init_fn:
        assert {s["tag"] for s in seen} == {"w0", "w1"}  # the user's own init still runs
    assert (
        torch.get_num_threads(),
        os.environ.get("OMP_NUM_THREADS"),
        zarr.config.get("threading.max_workers"),
    ) == parent


def test_helpers_are_picklable_and_validate():
    fn = pickle.loads(pickle.dumps(make_worker_init_fn(2, then=_tag)))
    assert fn.keywords["threads"] == 2
    with pytest.raises(ValueError):
        make_worker_init_fn(0)
    with pytest.raises(ValueError):
        limit_threads(0)
    assert tensorstore_context_spec(1)["data_copy_concurrency"] == {"limit": 1}
    assert tiledb_config(1)["sm.compute_concurrency_level"] == "1"
    assert "BLOSC_NTHREADS" in THREAD_ENV_VARS


def test_context_helpers_are_accepted_by_tensorstore_and_tiledb():
    ts = pytest.importorskip("tensorstore")
    tiledb = pytest.importorskip("tiledb")
    assert ts.Context(tensorstore_context_spec(1)).spec.to_json()["data_copy_concurrency"] == {"limit": 1}
    defaults = tiledb.Config()  # no Ctx here: a TileDB context in the test process would make later forks unsafe
    for key, value in tiledb_config(1).items():
        assert key in defaults and tiledb.Config({key: value})[key] == value


def test_worker_share_divides_the_cores_among_workers_and_local_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    from radiobject.ml import threads

    monkeypatch.setattr(threads, "cores", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.local_ranks() == 1 and threads.worker_share(4) == 4 and threads.worker_share(0) == 16
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun --nproc-per-node=2: two ranks share the node
    assert threads.local_ranks() == 2 and threads.worker_share(4) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert threads.worker_share(4) == 1  # never below one thread
    for bad in ("", "zero", "-3"):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", bad)
        assert threads.local_ranks() == 1


_AFTER_OPENMP = """
import torch
from torch.utils.data import DataLoader
from radiobject.ml.threads import make_worker_init_fn

torch.set_num_threads(2)
x = torch.ones(1 << 23)
for _ in range(5):  # the parent runs OpenMP teams of 2 threads (libgomp's pool now exists)
    torch.stack([x, x]).sum()

class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        big = torch.ones(1 << 22)
        return torch.stack([big, big]).sum()  # OpenMP inside the forked worker

loader = DataLoader(Data(), num_workers=1, multiprocessing_context="fork", worker_init_fn=make_worker_init_fn(2))
print(sum(float(v) for v in loader))
"""


def test_a_forked_worker_never_runs_openmp_teams_after_its_parent_did(tmp_path) -> None:
    """libgomp is not fork-safe: a forked child that starts a team of 2+ threads after its parent
    ran one waits in the team barrier forever. The worker gets more threads only where that is
    safe (BLAS, blosc, tensorstore), OpenMP / torch stay at 1 in a forked child."""
    import subprocess
    import sys

    script = tmp_path / "after_openmp.py"
    script.write_text(_AFTER_OPENMP)
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the forked worker hung in an OpenMP barrier")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip()) == 4 * 2 * (1 << 22)
