"""Reused shared-memory batch slots of worker processes (``radiobject.ml._slots``).

A slot is written again only after the training process dropped every view of the batch in it:
held batches keep their voxels, however long they are held and however many batches follow.
"""

from __future__ import annotations

import gc
import io
import pickle
from multiprocessing.reduction import ForkingPickler
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing  # noqa: F401 - registers torch's shared-memory reductions
from torch.utils.data import DataLoader, Dataset

from radiobject.ml import _slots, create_training_dataloader
from radiobject.ml import collate as collate_module
from radiobject.ml.collate import WireBatch, batch_buffer, collate
from radiobject.ml.distributed import set_epoch
from radiobject.ml.errors import WorkerError
from tests.ml._stores import make_store

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not _slots.ENABLED, reason="batch slots are used on x86-64 only"),
]

SHAPE = (2, 1, 64, 64, 64)  # 2 MiB of float32: above MIN_BYTES


@pytest.fixture
def in_worker(monkeypatch):
    """This process acts as a DataLoader worker (batch buffers in shared memory, slots in use)."""
    monkeypatch.setattr(collate_module, "get_worker_info", lambda: SimpleNamespace(id=0))
    monkeypatch.setattr(_slots, "_pool", None)
    monkeypatch.setattr(_slots, "_mapped", None)


def _send(batch: dict) -> dict:
    """A worker batch pickled as the DataLoader does, and unpickled as the training process does."""
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(WireBatch(batch))
    return pickle.loads(buf.getvalue())


def _ptr(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def test_a_slot_is_reused_only_after_every_view_is_dropped(in_worker):
    tensor, array = batch_buffer(SHAPE, np.float32)
    first = _ptr(tensor)
    array[:] = 7.0
    got = _send({"image": tensor, "subject_id": ["a", "b"]})
    del tensor, array
    assert torch.equal(got["image"], torch.full(SHAPE, 7.0)) and got["subject_id"] == ["a", "b"]
    view = got["image"][1, 0, 3:9]
    del got
    gc.collect()
    held, _ = batch_buffer(SHAPE, np.float32)  # a view is held: the slot is still taken
    assert _ptr(held) != first
    held.fill_(1.0)
    assert torch.equal(view, torch.full((6, 64, 64), 7.0))
    del view
    gc.collect()
    again, _ = batch_buffer(SHAPE, np.float32)  # every view dropped: the first slot again
    assert _ptr(again) == first


def test_a_slot_never_sent_is_not_reused_and_the_pool_stays_bounded(in_worker):
    taken = [batch_buffer(SHAPE, np.float32)[0] for _ in range(_slots.SLOTS_PER_SIZE + 3)]
    assert len({_ptr(t) for t in taken}) == len(taken)  # none written twice while held
    pool = _slots._pool
    assert pool is not None and len(pool.slots) == _slots.SLOTS_PER_SIZE
    del taken
    gc.collect()
    fresh = batch_buffer(SHAPE, np.float32)[0]  # never sent: never freed by the training process
    assert _ptr(fresh) not in {s.storage.data_ptr() for s in pool.slots[:-1]}


def test_the_pool_keeps_at_most_pool_bytes(in_worker, monkeypatch):
    nbytes = int(np.prod(SHAPE)) * 4
    monkeypatch.setattr(_slots, "POOL_BYTES", 3 * nbytes)
    for shape in (SHAPE, (3, *SHAPE[1:]), SHAPE, (4, *SHAPE[1:])):
        batch_buffer(shape, np.float32)
    pool = _slots._pool
    assert pool is not None and sum(s.nbytes for s in pool.slots) <= 3 * nbytes
    assert [s.nbytes / nbytes for s in pool.slots] == [1, 2]  # the least recently taken were forgotten
    again, _ = batch_buffer((4, *SHAPE[1:]), np.float32)
    assert _slots.is_slot(again) and [s.nbytes / nbytes for s in pool.slots] == [2]
    assert not _slots.is_slot(batch_buffer((8, *SHAPE[1:]), np.float32)[0])  # 4x nbytes > POOL_BYTES


def test_a_forked_child_never_frees_a_slot_its_parent_holds(in_worker):
    from tests.forking import in_forked_child

    tensor, array = batch_buffer(SHAPE, np.float32)
    array[:] = 5.0
    got = _send({"image": tensor})
    del tensor, array

    def child() -> bool:
        got.pop("image")  # the child's copy of the batch dies
        gc.collect()
        return True

    assert in_forked_child(child) is True
    pool = _slots._pool
    assert pool is not None and int(pool.slots[0].header[2]) == 2  # still SENT: the parent holds the batch
    got.pop("image")
    gc.collect()
    assert int(pool.slots[0].header[2]) == 0  # FREE once the parent dropped it


def test_after_the_first_hand_over_a_slot_travels_as_pid_and_descriptor(in_worker):
    tensor, array = batch_buffer(SHAPE, np.float32)
    first = _slots.outgoing(tensor)
    assert first is not None and first.tensor is not None  # torch hands the descriptor over once
    array[:] = 2.0
    got = _slots.incoming(first)
    assert torch.equal(got, torch.full(SHAPE, 2.0))
    del got
    gc.collect()
    tensor, array = batch_buffer(SHAPE, np.float32)
    array[:] = 4.0
    wire = _slots.outgoing(tensor)
    assert wire is not None and wire.tensor is None and wire.fd == first.fd  # the same slot, by /proc
    got = _slots.incoming(pickle.loads(pickle.dumps(wire)))
    assert torch.equal(got, torch.full(SHAPE, 4.0))


def test_a_reused_slot_is_mapped_once_by_the_training_process(in_worker, monkeypatch):
    """No ``open`` / ``mmap`` (and no page faults when the batch is read) per batch of a reused slot."""
    opens = []
    real = _slots._open_by_proc
    monkeypatch.setattr(_slots, "_open_by_proc", lambda wire: opens.append(wire.fd) or real(wire))
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):
        tensor, array = batch_buffer(SHAPE, np.float32)
        array[:] = value
        got = _send({"image": tensor})
        del tensor, array
        assert torch.equal(got["image"], torch.full(SHAPE, value))  # the kept mapping shows the new voxels
        del got
        gc.collect()
    assert len(opens) == 1  # the first hand-over's probe of /proc; then the kept mapping


def test_a_kept_mapping_is_used_only_for_the_same_file():
    storage = torch.UntypedStorage(64)
    wire = _slots.Wire(1, 5, (10, 20), 64, 1, 0, (16,), torch.float32, None)
    maps = _slots._Mapped()
    maps.maps[(1, 5)] = ((10, 20), 64, storage)
    assert maps.get(wire) is storage
    assert maps.get(_slots.Wire(1, 5, (10, 21), 64, 1, 0, (16,), torch.float32, None)) is None  # another inode
    assert maps.get(_slots.Wire(1, 5, (10, 20), 128, 1, 0, (16,), torch.float32, None)) is None  # another size
    assert maps.get(wire) is None  # a failed match dropped the stale mapping


def test_mappings_of_ended_workers_are_dropped():
    loader = DataLoader(
        _Coded(), batch_size=2, num_workers=2, collate_fn=collate, multiprocessing_context="fork", timeout=60
    )
    assert len(list(loader)) == 12  # a plain DataLoader, not persistent: the workers end with the pass
    ended = {pid for pid, _ in _slots._maps().maps}
    assert ended  # kept until the next new mapping (a plain DataLoader does not say when its workers end)
    from radiobject.ml.dataloader import RadiDataLoader
    from radiobject.ml.sampler import RadiSampler

    class Keyed(_Coded):  # a RadiSampler yields (epoch, index) keys
        def __getitem__(self, key: tuple[int, int]) -> dict:  # type: ignore[override]
            return super().__getitem__(key[1])

    data = Keyed()
    loader = RadiDataLoader(
        data,
        batch_size=2,
        sampler=RadiSampler(data, num_replicas=1, rank=0, shuffle=False),
        num_workers=2,
        collate_fn=collate,
        persistent_workers=True,
        multiprocessing_context="fork",
        timeout=60,
    )
    assert len(list(loader)) == 12
    pids = {w.pid for w in loader._iterator._workers}
    assert {pid for pid, _ in _slots._maps().maps} <= pids  # the ended workers' mappings were dropped
    del loader
    assert not {pid for pid, _ in _slots._maps().maps} & pids


def test_without_proc_access_the_tensor_keeps_travelling(in_worker, monkeypatch):
    monkeypatch.setattr(_slots, "_open_by_proc", lambda wire: None)
    for value in (1.0, 2.0, 3.0):
        tensor, array = batch_buffer(SHAPE, np.float32)
        array[:] = value
        wire = _slots.outgoing(tensor)
        assert wire is not None and wire.tensor is not None
        got = _slots.incoming(wire)
        assert torch.equal(got, torch.full(SHAPE, value))
        del got, tensor, array, wire
        gc.collect()


def test_slots_held_by_the_training_process_are_kept_and_not_reused(in_worker):
    held = []
    for i in range(_slots.SLOTS_PER_SIZE):
        tensor, array = batch_buffer(SHAPE, np.float32)
        array[:] = i
        held.append(_send({"image": tensor})["image"])
    del tensor, array
    extra, _ = batch_buffer(SHAPE, np.float32)  # every slot held: new memory, not a slot
    assert not _slots.is_slot(extra)
    pool = _slots._pool
    assert pool is not None and len(pool.slots) == _slots.SLOTS_PER_SIZE
    for i, got in enumerate(held):
        assert torch.equal(got, torch.full(SHAPE, float(i)))
    held.pop(0)
    gc.collect()
    again, _ = batch_buffer(SHAPE, np.float32)
    assert _slots.is_slot(again)


def test_small_buffers_and_the_training_process_use_no_slots(in_worker, monkeypatch):
    small, _ = batch_buffer((2, 1, 8, 8, 8), np.float32)
    assert not _slots.is_slot(small)
    monkeypatch.setattr(collate_module, "get_worker_info", lambda: None)
    plain, _ = batch_buffer(SHAPE, np.float32)
    assert not _slots.is_slot(plain) and not plain.is_shared()


def test_a_reused_or_damaged_slot_is_refused(in_worker):
    tensor, array = batch_buffer(SHAPE, np.float32)
    array[:] = 1.0
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(WireBatch({"image": tensor}))
    header = _slots._header(tensor.untyped_storage())
    header[1] += 1  # as if the slot had been taken again before the batch arrived
    with pytest.raises(WorkerError, match="no longer holds it"):
        pickle.loads(buf.getvalue())


def test_two_tensors_over_one_slot_travel_as_a_copy(in_worker):
    tensor, array = batch_buffer(SHAPE, np.float32)
    array[:] = 3.0
    got = _send({"image": tensor, "again": tensor[1]})
    assert torch.equal(got["again"], torch.full(SHAPE[1:], 3.0))
    assert _ptr(got["again"]) != _ptr(got["image"])


def test_collated_samples_go_into_slots_with_default_collate_values(in_worker):
    samples = [
        {"image": torch.rand(1, 64, 64, 64), "label": torch.randint(0, 3, (1, 8, 8, 8)), "id": f"s{i}"}
        for i in range(3)
    ]
    out = collate(samples)
    assert _slots.is_slot(out["image"]) and not _slots.is_slot(out["label"])
    ref = torch.utils.data.default_collate(samples)
    got = _send(out)
    assert list(got) == list(ref) and got["id"] == ref["id"]
    for key in ("image", "label"):
        assert got[key].dtype == ref[key].dtype and torch.equal(got[key], ref[key])


class _Coded(Dataset):
    """Per-sample dicts whose voxels encode the index: a sample that was overwritten shows."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((1, 64, 64, 64), float(i)), "index": i}


def _check_held(held: list[dict]) -> int:
    """How many held batches no longer hold their own voxels."""
    bad = 0
    for batch in held:
        for k, i in enumerate(batch["index"].tolist()):
            if not bool((batch["image"][k] == float(i)).all()):
                bad += 1
    return bad


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_held_batches_keep_their_voxels_with_worker_processes(context):
    """Every batch of three epochs is held to the end; two workers keep producing into slots."""
    loader = DataLoader(
        _Coded(),
        batch_size=2,
        num_workers=2,
        collate_fn=collate,
        multiprocessing_context=context,
        persistent_workers=True,
        timeout=60,
    )
    held: list[dict] = []
    for _ in range(3):
        for i, batch in enumerate(loader):
            if i % 2 == 0:
                held.append(batch)  # every other batch held: the others free their slots at once
            else:
                assert _check_held([batch]) == 0
    assert len(held) == 18 and _check_held(held) == 0


def test_the_check_fails_when_slots_are_freed_too_early(monkeypatch):
    """The test above can fail: freeing a slot on arrival lets a worker overwrite held batches."""

    def too_early(array: np.ndarray, header: np.ndarray, generation: int) -> None:
        header[2] = 0  # FREE while the batch is still held

    monkeypatch.setattr(_slots, "_hold", too_early)
    loader = DataLoader(_Coded(), batch_size=2, num_workers=2, collate_fn=collate, multiprocessing_context="fork")
    held = list(loader)
    assert _check_held(held) > 0


def test_loader_batches_equal_the_single_process_batches(tmp_path):
    """A real store, batched reads straight into slots: batches of 2 workers equal those of 0, all held."""
    radi = make_store(tmp_path / "s", "zarr", n=4, shape=(72, 72, 72), chunks=(32, 32, 32))
    kw = dict(modalities=["T1w"], patch_size=(64, 64, 64), batch_size=2, seed=3, patches_per_volume=4)

    def run(loader):
        out = []
        for e in range(2):
            set_epoch(loader, e)
            out += list(loader)
        return out

    ref = run(create_training_dataloader(radi, num_workers=0, **kw))
    got = run(
        create_training_dataloader(
            radi, num_workers=2, worker_mode="processes", multiprocessing_context="fork", timeout=60, **kw
        )
    )
    assert len(got) == len(ref) == 16
    assert any(_slots_used(b) for b in got)
    for a, b in zip(ref, got, strict=True):
        assert a["subject_id"] == b["subject_id"] and torch.equal(a["patch_origin"], b["patch_origin"])
        assert torch.equal(a["image"], b["image"])


def _slots_used(batch: dict) -> bool:
    """Whether ``batch["image"]`` arrived from a slot (a numpy-wrapped tensor over shared memory)."""
    return not batch["image"].is_shared()
