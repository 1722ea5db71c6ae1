"""Worker processes: fork and spawn with num_workers=2 on both backends give exactly the 0-worker batches.

Every multiprocess run is bounded: DataLoader ``timeout`` raises instead of hanging, and pytest's
``timeout`` marker kills the test as a last resort.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from radiobject.ml import CacheStrategy, create_training_dataloader
from radiobject.ml.distributed import set_epoch
from tests.ml._stores import decode_origin, make_store

SHAPE = (16, 16, 12)
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def store(tmp_path, backend):
    return make_store(tmp_path / f"store-{backend}", backend, n=6, shape=SHAPE)


def _run(loader, epochs=2):
    out = []
    for e in range(epochs):
        set_epoch(loader, e)
        for b in loader:
            for k, sid in enumerate(b["subject_id"]):
                subj, origin = decode_origin(float(b["image"][k, 0, 0, 0, 0]))
                assert f"sub-{subj:02d}" == sid and origin == tuple(b["patch_origin"][k].tolist())
                out.append((e, sid, origin, int(b["label"][k].sum()) if "label" in b else -1))
    return out


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_match_single_process(store, context):
    kw = dict(
        modalities=["T1w", "FLAIR"],
        label="seg",
        patch_size=(6, 6, 6),
        batch_size=2,
        seed=5,
        sampler="foreground",
        foreground_prob=0.5,
    )
    ref = _run(create_training_dataloader(store, num_workers=0, **kw))
    loader = create_training_dataloader(
        store, num_workers=2, multiprocessing_context=context, timeout=60, persistent_workers=True, **kw
    )
    got = _run(loader)
    assert got == ref  # same samples, same patches, same order: draws do not depend on workers
    assert {sid for _, sid, _, _ in got} == {f"sub-{i:02d}" for i in range(6)}


def test_shared_memory_cache_one_copy_per_node(store):
    loader = create_training_dataloader(
        store,
        modalities="T1w",
        patch_size=(6, 6, 6),
        batch_size=2,
        num_workers=2,
        multiprocessing_context="fork",
        timeout=60,
        cache_strategy=CacheStrategy.SHARED_MEMORY,
        cache_bytes=64 << 20,
    )
    cache = loader.dataset.reader.cache
    try:
        _run(loader, epochs=2)
        # caches hold chunks (8^3 here, 8 per volume): one shared file per chunk for both workers
        assert 0 < len(cache) <= 6 * 8
        assert cache.nbytes >= len(cache) * 8 * 8 * 4 * 4  # edge chunks along z: 8 x 8 x 4
    finally:
        cache.close()


def test_worker_error_names_the_subject_and_does_not_hang(tmp_path):
    store = make_store(tmp_path / "broken", "zarr", n=4, shape=SHAPE)
    shutil.rmtree(tmp_path / "broken" / "collections" / "T1w" / "volumes" / "sub-02")
    loader = create_training_dataloader(
        store,
        modalities="T1w",
        patch_size=(4, 4, 4),
        batch_size=1,
        num_workers=2,
        multiprocessing_context="fork",
        timeout=60,
    )
    with pytest.raises(Exception, match="sub-02"):
        _run(loader, epochs=1)


def test_worker_threads_are_limited(store):
    loader = create_training_dataloader(
        store,
        modalities="T1w",
        patch_size=(4, 4, 4),
        batch_size=2,
        num_workers=2,
        multiprocessing_context="fork",
        timeout=60,
        transforms=_threads_probe,
    )
    b = next(iter(loader))
    assert b["threads"].tolist() == [1, 1]  # one intra-op thread inside each worker


def _threads_probe(sample):
    sample["threads"] = torch.get_num_threads()
    return sample


def _batches(loader, epochs=2):
    out = []
    for e in range(epochs):
        set_epoch(loader, e)
        for b in loader:
            out.append({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in b.items()})
    return out


def _same(got, ref):
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert list(g) == list(r)  # same keys, same order
        for k in r:
            if isinstance(r[k], torch.Tensor):
                assert g[k].dtype == r[k].dtype and g[k].shape == r[k].shape
                assert torch.equal(g[k], r[k]), k
            else:
                assert g[k] == r[k], k


@pytest.mark.slow
@pytest.mark.parametrize("context", ["forkserver", "spawn", None])
def test_process_workers_give_exactly_the_zero_worker_batches(tmp_path, context):
    """Every tensor equal (images, labels, affines, spacings, origins, indices), for a fixed seed, with
    forkserver / spawn workers and with the default context in a process that has used tensorstore."""
    from radiobject.storage.zarr_backend import tensorstore_used

    store = make_store(tmp_path / "s", "zarr", n=5, shape=SHAPE)
    kw = dict(modalities=["T1w", "FLAIR"], label="seg", patch_size=(6, 6, 6), batch_size=2, seed=11)
    ref = _batches(create_training_dataloader(store, num_workers=0, **kw))
    assert tensorstore_used()  # the 0-worker pass read through tensorstore in this process
    loader = create_training_dataloader(
        store, num_workers=2, worker_mode="processes", multiprocessing_context=context, timeout=60, **kw
    )
    got = _batches(loader)
    if context is None:  # a local store read by the own reader: forked workers never touch tensorstore
        assert loader.multiprocessing_context is None
    else:
        assert loader.multiprocessing_context.get_start_method() == context
    assert loader.persistent_workers  # the default for process workers: started once per loader
    _same(got, ref)


_ZARR_PYTHON_OPENS: list[str] = []  # in a forked worker: its own copy


def _reads_through(sample):
    from radiobject.storage.zarr_backend import tensorstore_usable

    sample["tensorstore"] = int(tensorstore_usable())
    sample["zarr_python"] = len(_ZARR_PYTHON_OPENS)
    return sample


@pytest.mark.slow
def test_default_context_forks_where_reads_never_use_tensorstore(tmp_path, monkeypatch):
    """After this process used tensorstore: a local store read by the own Zarr reader gets forked
    workers (fast to start, no zarr-python fallback); one read through tensorstore gets forkserver
    workers, which can use it."""
    from radiobject.storage import zarr_backend

    real = zarr_backend.ZarrBackend._zarr_python
    monkeypatch.setattr(
        zarr_backend.ZarrBackend, "_zarr_python", lambda self, uri: _ZARR_PYTHON_OPENS.append(uri) or real(self, uri)
    )
    store = make_store(tmp_path / "s", "zarr", n=4, shape=SHAPE)
    kw = dict(modalities="T1w", patch_size=(4, 4, 4), batch_size=2, seed=2, transforms=_reads_through)
    ref = next(iter(create_training_dataloader(store, num_workers=0, **kw)))  # the parent uses tensorstore
    auto = create_training_dataloader(store, num_workers=1, timeout=60, **kw)
    got = next(iter(auto))
    assert auto.multiprocessing_context is None  # fork
    assert got["tensorstore"].tolist() == [0, 0] and got["zarr_python"].tolist() == [0, 0]  # the own reader
    assert torch.equal(got["image"], ref["image"])
    monkeypatch.setattr(zarr_backend, "PLAIN_READS", False)  # this process now reads through tensorstore
    store = make_store(tmp_path / "t", "zarr", n=4, shape=SHAPE)
    auto = create_training_dataloader(store, num_workers=1, timeout=60, **kw)
    assert next(iter(auto))["tensorstore"].tolist() == [1, 1]
    assert auto.multiprocessing_context.get_start_method() == "forkserver"


def test_default_context_falls_back_to_fork_for_an_unpicklable_dataset(store, backend, monkeypatch):
    """A lambda transform: forked workers. Silently where reads never use tensorstore (local stores);
    with a warning where they would (they read through zarr-python there, several times slower)."""
    import warnings

    from radiobject.ml.dataloader import default_context
    from radiobject.storage import zarr_backend

    loader = create_training_dataloader(store, modalities="T1w", patch_size=(4, 4, 4), transforms=lambda s: s)
    next(iter(loader))  # 0 workers: this process may have used tensorstore (zarr writes) or not (tiledb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert default_context(loader.dataset) is None  # the default start method (fork on Linux)
    if backend != "zarr":
        return
    assert zarr_backend.tensorstore_used()  # the store was written through tensorstore
    monkeypatch.setattr(zarr_backend, "PLAIN_READS", False)  # reads through tensorstore from now on
    loader = create_training_dataloader(store, modalities="T1w", patch_size=(4, 4, 4), transforms=lambda s: s)
    with pytest.warns(RuntimeWarning, match="cannot be pickled"):
        assert default_context(loader.dataset) is None
    assert default_context() == "forkserver"


def test_no_read_ahead_in_the_main_process_of_process_workers(store):
    """With worker processes the sampler runs where no sample is read: its prefetch is off (a read
    started there would never be used); threads and 0 workers keep it."""
    kw = dict(modalities=["T1w"], patch_size=(6, 6, 6), batch_size=2, prefetch_patches=4)
    assert create_training_dataloader(store, num_workers=0, **kw).sampler.prefetch_patches == 4
    assert create_training_dataloader(store, num_workers=2, worker_mode="threads", **kw).sampler.prefetch_patches == 4
    procs = create_training_dataloader(
        store, num_workers=1, worker_mode="processes", multiprocessing_context="spawn", persistent_workers=False, **kw
    )
    assert procs.sampler.prefetch_patches == 0


def test_worker_error_says_why_a_worker_ended() -> None:
    """torch's texts for a worker that raised at start-up (exit code 1, e.g. a spawn script without
    a main guard) and for one that was killed get different reasons; the code may only be in the
    first of torch's chained errors."""
    from radiobject.ml.dataloader import worker_error

    started = RuntimeError("DataLoader worker (pid 7) exited unexpectedly with exit code 1. Details are lost")
    assert "raised at start-up" in str(worker_error(started, "here"))
    last = RuntimeError("DataLoader worker (pid(s) 7) exited unexpectedly")
    last.__cause__ = started
    assert "`if __name__ == '__main__':`" in str(worker_error(last, "here"))
    killed = RuntimeError("DataLoader worker (pid 7) is killed by signal: Killed.")
    assert "out-of-memory killer" in str(worker_error(killed, "here"))
    assert worker_error(RuntimeError("something else"), "here") is None
    # torch's message after a failed wait names no code: the workers' own exit codes say why
    bare = RuntimeError("DataLoader worker (pid(s) 7, 8) exited unexpectedly")
    assert "raised at start-up" in str(worker_error(bare, "here", {7: 1, 8: 1, 9: None}))
    assert "killed by SIGKILL: e.g. the out-of-memory killer" in str(worker_error(bare, "here", {7: -9}))
    assert "exit code 3" in str(worker_error(bare, "here", {7: 3, 99: 1}))  # pid 99 is not named
    assert "killed, e.g. by the out-of-memory killer, or crashed" in str(worker_error(bare, "here", {}))


def test_a_worker_of_a_script_without_main_guard_is_reported_as_such(tmp_path):
    """A new user's script: no ``if __name__ == "__main__":``, forkserver workers (which re-run the
    script; torch's message then names no exit code): the error says what to do, not that the
    workers were killed."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch
            from radiobject.ml.dataloader import RadiDataLoader
            from radiobject.ml.sampler import RadiSampler

            class D(torch.utils.data.Dataset):
                def __len__(self):
                    return 4
                def __getitem__(self, key):
                    return torch.tensor(key)

            loader = RadiDataLoader(D(), batch_size=2, sampler=RadiSampler(D(), num_replicas=1, rank=0),
                                    num_workers=1, persistent_workers=True, multiprocessing_context="forkserver")
            next(iter(loader))
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "WorkerError" in proc.stderr and "raised at start-up" in proc.stderr, proc.stderr[-2000:]
