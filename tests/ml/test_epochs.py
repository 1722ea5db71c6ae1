"""Persistent workers run ahead into the next epoch (``radiobject.ml._epochs``).

What a loader delivers must not change: every case compares the batches of a run-ahead loader with
those of the same loader with ``run_ahead = False`` (PyTorch's own epoch start): consecutive epochs,
skipped epochs, no ``set_epoch``, a pass left mid-way, a resume point, another rank. One test shows
that the workers really begin the next epoch before it is asked for.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from radiobject.ml._epochs import EpochStream
from radiobject.ml.dataloader import RadiDataLoader
from radiobject.ml.sampler import EpochNotSetWarning, RadiSampler

pytestmark = pytest.mark.timeout(120)


class Keys(torch.utils.data.Dataset):
    """Sample ``(epoch, index)`` is the tensor ``[epoch, index]``; each read is logged to ``log`` (if set)."""

    def __init__(self, n: int, log: str | None = None) -> None:
        self.n, self.log = n, log

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{key[0]} {key[1]} {time.monotonic()}\n")
        return torch.tensor(key)


def _loader(n=10, *, run_ahead=True, batch_size=3, drop_last=False, rank=0, world=1, log=None, workers=2):
    sampler = RadiSampler(Keys(n), num_replicas=world, rank=rank, seed=7, prefetch_patches=0)
    loader = RadiDataLoader(
        Keys(n, log),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=drop_last,
        multiprocessing_context="fork",
        timeout=60,
    )
    loader.run_ahead = run_ahead
    return loader


def _passes(loader, epochs, *, stop_after=None):
    """``[[batch as list of (epoch, index)] per pass]``; ``epochs`` = the set_epoch values (None: no call)."""
    out = []
    for k, e in enumerate(epochs):
        if e is not None:
            loader.sampler.set_epoch(e)
        got = []
        for b in loader:
            got.append([tuple(x) for x in b.tolist()])
            if stop_after is not None and k == stop_after[0] and len(got) == stop_after[1]:
                break
        out.append(got)
    return out


@pytest.mark.parametrize(
    ("epochs", "kw"),
    [
        ([0, 1, 2, 3], {}),
        ([0, 1, 2, 3], {"drop_last": True}),
        ([0, 5, 6, 2, 3], {}),  # jumps: the prediction fails, the pass starts afresh
        ([0, 1, 2], {"rank": 1, "world": 3}),
        ([0, 1, 2], {"n": 2, "rank": 2, "world": 3}),  # a rank with nothing but padding
        ([0, 1, 2], {"n": 4, "batch_size": 8}),  # one batch per epoch: several epochs ahead
    ],
)
def test_run_ahead_delivers_what_pytorchs_epoch_start_does(epochs, kw):
    ref = _passes(_loader(run_ahead=False, **kw), epochs)
    loader = _loader(**kw)
    assert _passes(loader, epochs) == ref
    assert all(b[0][0] == e for got, e in zip(ref, epochs, strict=True) for b in got)


def test_a_pass_left_mid_way_and_a_repeated_epoch():
    ref = _passes(_loader(run_ahead=False), [0, 1, 2], stop_after=(0, 2))
    assert _passes(_loader(), [0, 1, 2], stop_after=(0, 2)) == ref
    with pytest.warns(EpochNotSetWarning):
        ref = _passes(_loader(run_ahead=False), [0, None, 1])
    with pytest.warns(EpochNotSetWarning):
        assert _passes(_loader(), [0, None, 1]) == ref


def test_resume_point_after_run_ahead():
    """A state saved mid-epoch and loaded into the same running loader: exactly the unseen samples."""
    results = []
    for run_ahead in (False, True):
        loader = _loader(n=12, run_ahead=run_ahead)
        first = _passes(loader, [0, 1])
        loader.sampler.set_epoch(2)
        it = iter(loader)
        seen = [next(it).tolist() for _ in range(2)]
        state = loader.state_dict()
        del it
        loader.load_state_dict(state)
        rest = _passes(loader, [None, 3])
        results.append((first, seen, rest))
    assert results[0] == results[1]
    first, seen, rest = results[1]
    epoch2 = [i for b in seen for _, i in b] + [i for b in rest[0] for _, i in b]
    assert sorted(epoch2) == list(range(12))  # the resumed pass: exactly the samples not yet seen


@pytest.mark.parametrize("consumer", ["exhausts", "counts"])
def test_workers_begin_the_next_epoch_before_it_is_asked_for(tmp_path: Path, consumer: str):
    """``counts``: a trainer that knows the length (Lightning) never asks past the last batch; the
    pass still counts as delivered, and what was read ahead is used, never read again."""
    log = tmp_path / "reads.log"
    loader = _loader(n=12, batch_size=2, log=str(log))
    loader.sampler.set_epoch(0)
    if consumer == "exhausts":
        for _ in loader:
            pass
    else:
        it = iter(loader)
        for _ in range(len(loader)):
            next(it)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the next epoch's first batches are read with nobody asking
        if log.exists() and any(line.split()[0] == "1" for line in log.read_text().splitlines()):
            break
        time.sleep(0.05)
    else:
        pytest.fail("no read of epoch 1 before its pass began")
    early = {int(line.split()[1]) for line in log.read_text().splitlines() if line.split()[0] == "1"}
    loader.sampler.set_epoch(1)
    second = [i for b in loader for _, i in b.tolist()]
    assert early <= set(second[:8])  # what was read ahead is the start of the pass that followed
    assert sorted(second) == list(range(12))
    reads = [tuple(line.split()[:2]) for line in log.read_text().splitlines() if line.split()[0] == "1"]
    assert len(reads) == len(set(reads)) == 12  # each read once: nothing built ahead was discarded
    off = _loader(n=12, batch_size=2, log=str(tmp_path / "off.log"), run_ahead=False)
    off.sampler.set_epoch(0)
    for _ in off:
        pass
    time.sleep(1.0)
    lines = (tmp_path / "off.log").read_text().splitlines()
    assert lines and not any(line.split()[0] == "1" for line in lines)  # PyTorch's own start: nothing ahead


def test_epoch_stream_predicts_by_the_last_step():
    seen = []

    def fresh(epoch):
        seen.append(epoch)
        return np.arange(3) + 10 * epoch

    s = EpochStream(2, False, fresh, lambda: 2)
    s.restart(0, np.arange(3))
    gen = iter(s)
    assert [next(gen) for _ in range(4)] == [[(0, 0), (0, 1)], [(0, 2)], [(1, 10), (1, 11)], [(1, 12)]]
    s.delivered = True
    assert not s.follows(2, fresh(2))  # not the pass that follows 0
    s.restart(4, np.arange(3) + 40)  # the step is now 4
    s.delivered = True
    assert s.follows(8, np.arange(3) + 80)
    assert not s.follows(12, np.arange(3) + 120)  # the current pass was not delivered yet
    assert s.batches(5) == 3 and EpochStream(2, True, fresh, lambda: 2).batches(5) == 2


def test_a_loader_that_ran_ahead_is_freed_at_once():
    """No reference cycle through the epoch stream: the last reference frees the loader and stops its
    workers at once (in a cycle the garbage collector closes torch's worker queues first, and each
    worker then waits out a 5 s join timeout)."""
    import gc
    import weakref

    loader = _loader(n=12, batch_size=2)
    _passes(loader, [0, 1])
    workers = list(loader._iterator._workers)
    ref = weakref.ref(loader)
    gc.disable()
    try:
        t0 = time.monotonic()
        del loader
        assert ref() is None
        for w in workers:
            w.join(timeout=10)
        assert not any(w.is_alive() for w in workers)
        assert time.monotonic() - t0 < 4
    finally:
        gc.enable()


@pytest.mark.parametrize("run_ahead", [True, False])
def test_a_loader_in_a_reference_cycle_stops_its_workers_promptly(run_ahead):
    """A cycle made by the caller (``collate_fn`` a method of an object that holds the loader, common
    in training code): when the garbage collector frees it, its workers stop at once."""
    import gc

    loader = _loader(n=12, batch_size=2, run_ahead=run_ahead)
    loader.owner = [loader]  # the cycle
    _passes(loader, [0, 1])
    workers = list(loader._iterator._workers)
    del loader
    t0 = time.monotonic()
    gc.collect()
    for w in workers:
        w.join(timeout=15)
    assert not any(w.is_alive() for w in workers)
    assert time.monotonic() - t0 < 4


def test_run_ahead_switched_between_epochs():
    """``run_ahead`` turned off and on again between epochs: the same batches, every pass ends."""
    ref = _passes(_loader(run_ahead=False), [0, 1, 2, 3])
    loader = _loader()
    got = _passes(loader, [0])
    loader.run_ahead = False
    got += _passes(loader, [1])
    loader.run_ahead = True
    got += _passes(loader, [2, 3])
    assert got == ref


def test_a_worker_killed_between_passes_gets_new_workers_for_the_next():
    """A forked worker is a child of this process: torch's SIGCHLD handler raises (typed) wherever the
    main thread is when it dies, possibly outside the loader's loop. The next pass must not reuse
    the broken workers: it starts new ones and delivers every batch."""
    import os
    import signal

    from radiobject.ml.errors import WorkerError

    ref = _passes(_loader(run_ahead=False), [0, 1])
    loader = _loader()
    got = _passes(loader, [0])
    os.kill(loader._iterator._workers[0].pid, signal.SIGKILL)
    try:
        time.sleep(1.0)  # the SIGCHLD error, if raised here, is the caller's to see
    except WorkerError:
        pass
    got += _passes(loader, [1])
    assert got == ref
