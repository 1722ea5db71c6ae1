"""Reused shared-memory batch buffers ("slots") of DataLoader worker processes.

**Why.** A worker process writes each batch into shared memory so that the training process maps
it instead of copying it. torch allocates *new* shared memory for every batch, and writing new
tmpfs pages costs first-touch page faults and zeroing: 3.4 ms of CPU per 8 MB against 0.6 ms for
pages already mapped, which made a worker about 1.4x slower per patch than the main process
(docs/benchmarks.md, "Batch size and the hand-over"). A worker therefore keeps a few slots per
batch size and writes its next batches into slots the training process has let go of.

**Protocol** (one header of :data:`HEADER_BYTES` in front of each slot's data: a magic number, a
generation, a state and whether the training process can open the slot through ``/proc``):

1. :func:`take` (worker) returns a slot whose state is ``FREE``, now ``WORKER``, with a new
   generation; or a new slot; or ``None`` (the caller allocates as torch does).
2. :func:`outgoing` (worker, while the batch is pickled for the training process): ``SENT``, and
   the slot's description: the tensor itself (torch hands its file descriptor over, a socket
   round trip of about 0.4 ms of the training process's CPU), or, once the training process has
   shown it can, only the worker's pid and descriptor number, which it opens as
   ``/proc/<pid>/fd/<n>`` (checked against the file's device and inode).
3. :func:`incoming` (training process, while the batch is unpickled) checks magic, generation and
   state and returns a tensor over the same memory whose last reference, when dropped, sets the
   state back to ``FREE`` (a ``weakref.finalize`` on the array the tensor wraps: views, slices and
   tensors kept anywhere keep the slot taken).

A worker writes only into slots in state ``FREE``, so a batch the training process still holds
(kept in a list, reordered by the DataLoader, used by a transform) is never overwritten: the
worker uses another slot, or new memory when all its slots are taken. A sent slot stays in the
worker's pool (its descriptor open) until it is free again; a slot that was never sent (a failed
batch, another collate function) stays taken until the worker forgets it, which only drops the
worker's reference. The training process's release is a store after its last reads of the slot,
and the worker's reuse is a load before its writes; x86-64 keeps both orders (TSO), so slots are
used there only (:data:`ENABLED`); elsewhere every batch gets new memory as in torch.
"""

from __future__ import annotations

import os
import platform
import sys
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from radiobject._os.forks import ForkSafeLock
from radiobject.ml.errors import WorkerError

__all__ = [
    "ENABLED",
    "HEADER_BYTES",
    "MIN_BYTES",
    "POOL_BYTES",
    "SLOTS_PER_SIZE",
    "Wire",
    "c_strides",
    "forget",
    "incoming",
    "is_slot",
    "outgoing",
    "take",
]

#: Bytes in front of each slot's data (int64 words: magic, generation, state, /proc); a multiple of every
#: dtype's size, so the data starts aligned.
HEADER_BYTES = 64
#: Smaller batch tensors are allocated as torch does (their page faults cost little).
MIN_BYTES = 1 << 20
#: Slots kept per batch size and worker: the batches in flight (``prefetch_factor``, 2 by default),
#: the one being trained on and one more.
SLOTS_PER_SIZE = 4
#: Shared memory a worker keeps in slots at most (beyond it, the least recently taken are forgotten).
POOL_BYTES = 1 << 30
#: Slots are reused only where the CPU keeps loads before later stores in order (see the module doc),
#: on Linux (descriptor sharing and ``/proc``).
ENABLED = sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")

_MAGIC = 0x52414449534C4F54  # "RADISLOT"
_FREE, _WORKER, _SENT = 0, 1, 2
_MAGIC_AT, _GEN_AT, _STATE_AT, _PROC_AT = 0, 1, 2, 3


class _Slot:
    __slots__ = ("fd", "header", "ident", "nbytes", "storage")

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.storage = torch.UntypedStorage._new_shared(HEADER_BYTES + nbytes)
        self.fd = int(self.storage._share_fd_cpu_()[0])  # kept open by the storage while it lives
        st = os.fstat(self.fd)
        self.ident = (st.st_dev, st.st_ino)
        self.header = _header(self.storage)
        self.header[:] = 0
        self.header[_MAGIC_AT] = _MAGIC


def _header(storage: torch.UntypedStorage) -> np.ndarray:
    words = HEADER_BYTES // 8
    return torch.empty(0, dtype=torch.int64).set_(storage, 0, (words,), (1,)).numpy()


class _Pool:
    """One worker process's slots, least recently taken first."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.slots: list[_Slot] = []
        self.by_ptr: dict[int, _Slot] = {}
        self.generation = 0

    def room_for(self, nbytes: int) -> bool:
        """Forgets the least recently taken slots not sent (the worker's reference only) until one
        more of ``nbytes`` fits both limits; ``False`` when it cannot (slots held by the training process)."""

        def over() -> bool:
            same = sum(s.nbytes == nbytes for s in self.slots)
            return same >= SLOTS_PER_SIZE or sum(s.nbytes for s in self.slots) + nbytes > POOL_BYTES

        while over():
            same_full = sum(s.nbytes == nbytes for s in self.slots) >= SLOTS_PER_SIZE
            old = next(
                (s for s in self.slots if int(s.header[_STATE_AT]) != _SENT and (s.nbytes == nbytes or not same_full)),
                None,
            )
            if old is None:
                return False
            self.slots.remove(old)
            self.by_ptr.pop(old.storage.data_ptr(), None)
        return True


_lock = ForkSafeLock()
_pool: _Pool | None = None


def _this_pool() -> _Pool:
    global _pool
    if _pool is None or _pool.pid != os.getpid():  # a forked child never writes its parent's slots
        _pool = _Pool()
    return _pool


def take(nbytes: int) -> tuple[torch.UntypedStorage, int] | None:
    """A slot of ``nbytes`` data bytes, now taken: ``(storage, data byte offset)``, or ``None``.

    ``None`` when slots are not used (:data:`ENABLED`, below :data:`MIN_BYTES`, above
    :data:`POOL_BYTES`) or all of them are held by the training process. Without a free slot of
    this size a new one is made; the least recently taken slots not sent are forgotten (never
    reused) to keep :data:`SLOTS_PER_SIZE` and :data:`POOL_BYTES`.
    """
    if not ENABLED or not MIN_BYTES <= nbytes <= POOL_BYTES:
        return None
    with _lock:
        pool = _this_pool()
        slot = next((s for s in pool.slots if s.nbytes == nbytes and int(s.header[_STATE_AT]) == _FREE), None)
        if slot is None:
            if not pool.room_for(nbytes):
                return None
            slot = _Slot(nbytes)
            pool.by_ptr[slot.storage.data_ptr()] = slot
        else:
            pool.slots.remove(slot)
        pool.slots.append(slot)
        pool.generation += 1
        slot.header[_GEN_AT] = pool.generation
        slot.header[_STATE_AT] = _WORKER
        return slot.storage, HEADER_BYTES


@dataclass(frozen=True)
class Wire:
    """A slot tensor as it travels: the worker's pid, descriptor and file identity, the view, and
    ``tensor`` (``None`` once the training process opens the slot through ``/proc``)."""

    pid: int
    fd: int
    ident: tuple[int, int]
    size: int
    generation: int
    offset: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    tensor: torch.Tensor | None


def is_slot(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` lies in one of this process's slots (in any state)."""
    pool = _pool
    if pool is None or pool.pid != os.getpid() or tensor.device.type != "cpu":
        return False
    return tensor.untyped_storage().data_ptr() in pool.by_ptr


def outgoing(tensor: torch.Tensor) -> Wire | None:
    """``tensor``'s slot, now ``SENT``, as it travels; ``None`` unless it is a contiguous view of a
    slot of this process taken and not sent yet (a second tensor over one slot: callers copy it)."""
    if not ENABLED or tensor.device.type != "cpu" or not tensor.is_contiguous():
        return None
    with _lock:
        pool = _pool
        if pool is None or pool.pid != os.getpid():
            return None
        slot = pool.by_ptr.get(tensor.untyped_storage().data_ptr())
        if slot is None or int(slot.header[_STATE_AT]) != _WORKER:
            return None
        slot.header[_STATE_AT] = _SENT
        by_proc = int(slot.header[_PROC_AT]) == 1
        return Wire(
            pool.pid,
            slot.fd,
            slot.ident,
            HEADER_BYTES + slot.nbytes,
            int(slot.header[_GEN_AT]),
            int(tensor.storage_offset()),
            tuple(tensor.shape),
            tensor.dtype,
            None if by_proc else tensor,
        )


def _mapped_budget() -> int:
    try:
        shm = os.statvfs("/dev/shm")
        return min(1 << 30, shm.f_blocks * shm.f_frsize // 4)
    except OSError:
        return 1 << 30


#: Slot memory the training process keeps mapped (least recently received dropped beyond it): 1 GiB,
#: at most a quarter of ``/dev/shm`` (a mapping the worker has let go of still holds its memory).
MAPPED_BYTES = _mapped_budget()


class _Mapped:
    """The training process's mappings of received slots, by ``(worker pid, descriptor)``.

    A slot is reused for batch after batch; mapping it again for each one cost an ``open`` of
    ``/proc/<pid>/fd/<n>``, an ``mmap`` / ``munmap`` and, when the batch is read, a page fault per
    4 KiB page (measured 0.57 ms wall, 1.1 ms CPU to read a 7 MB batch in a new mapping, 0.06 ms in
    one kept). A kept mapping is used only for the same file (device and inode, which cannot be
    reused while the mapping holds the file) of the same size; the header is checked on every batch
    as before. Mappings of workers that have exited are dropped at the next new mapping and by
    :func:`forget`, so the memory of a finished loader's slots is not held.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.maps: dict[tuple[int, int], tuple[tuple[int, int], int, torch.UntypedStorage]] = {}

    def get(self, wire: Wire) -> torch.UntypedStorage | None:
        hit = self.maps.pop((wire.pid, wire.fd), None)
        if hit is not None and hit[0] == wire.ident and hit[1] == wire.size:
            self.maps[(wire.pid, wire.fd)] = hit  # now the most recent
            return hit[2]
        return None

    def put(self, wire: Wire, storage: torch.UntypedStorage) -> None:
        self.maps = {k: v for k, v in self.maps.items() if _alive(k[0])}
        self.maps[(wire.pid, wire.fd)] = (wire.ident, wire.size, storage)
        while sum(v[1] for v in self.maps.values()) > MAPPED_BYTES and len(self.maps) > 1:
            del self.maps[next(iter(self.maps))]


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


_mapped: _Mapped | None = None


def _maps() -> _Mapped:
    global _mapped
    if _mapped is None or _mapped.pid != os.getpid():  # a forked child keeps none of its parent's
        _mapped = _Mapped()
    return _mapped


def forget(pids: list[int]) -> None:
    """Drops the training process's mappings of slots of the worker processes ``pids`` (they ended).

    Takes no lock: it runs in a loader's finaliser, which the garbage collector may call in a thread
    that holds ``_lock``; one rebinding is atomic, and a prune lost to a concurrent ``put`` only
    keeps a mapping until the next one."""
    maps = _maps()
    maps.maps = {k: v for k, v in list(maps.maps.items()) if k[0] not in pids}


def _mapped_slot(wire: Wire) -> torch.UntypedStorage | None:
    """The received slot's memory: a kept mapping of the same file, else opened (and kept)."""
    with _lock:
        kept = _maps().get(wire)
    if kept is not None:
        return kept
    opened = _open_by_proc(wire)
    if opened is not None:
        with _lock:
            _maps().put(wire, opened)
    return opened


def _open_by_proc(wire: Wire) -> torch.UntypedStorage | None:
    """The slot's memory opened as ``/proc/<pid>/fd/<n>`` when that is the same file, else ``None``."""
    try:
        fd = os.open(f"/proc/{wire.pid}/fd/{wire.fd}", os.O_RDWR)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != wire.ident or st.st_size != wire.size:
            return None
        # torch's own rebuild of a received descriptor (torch.multiprocessing.reductions)
        return torch.UntypedStorage._new_shared_fd_cpu(fd, wire.size)  # type: ignore[attr-defined]
    finally:
        os.close(fd)


def _release(header: np.ndarray, generation: int, pid: int) -> None:
    # only in the process that received the batch: a forked child's copy of the array must not free
    # the slot its parent still holds
    if os.getpid() == pid and int(header[_GEN_AT]) == generation and int(header[_STATE_AT]) == _SENT:
        header[_STATE_AT] = _FREE


def incoming(wire: Wire) -> torch.Tensor:
    """The training process's tensor over a received slot; dropping its last view frees the slot.

    Raises :class:`WorkerError` when the slot cannot be opened or its header does not show this
    batch as sent (the memory was reused or damaged): never a batch of other voxels.
    """
    where = f"a batch from DataLoader worker process {wire.pid}"
    if wire.tensor is not None:
        storage = wire.tensor.untyped_storage()
        header = _header(storage)
        if int(header[_PROC_AT]) == 0 and _mapped_slot(wire) is not None:
            header[_PROC_AT] = 1  # the worker's next sends of this slot: pid and descriptor only
    else:
        opened = _mapped_slot(wire)
        if opened is None:
            raise WorkerError(f"{where}: its shared memory /proc/{wire.pid}/fd/{wire.fd} cannot be opened any more")
        storage = opened
        header = _header(storage)
    magic, gen, state = (int(header[i]) for i in (_MAGIC_AT, _GEN_AT, _STATE_AT))
    if magic != _MAGIC or gen != wire.generation or state != _SENT:
        raise WorkerError(
            f"{where} lies in shared memory that no longer holds it (slot generation {gen}, state {state}, "
            f"expected generation {wire.generation} sent); the batch is refused"
        )
    view = torch.empty(0, dtype=wire.dtype).set_(storage, wire.offset, wire.shape, c_strides(wire.shape))
    array = view.numpy()
    out = torch.from_numpy(array)
    _hold(array, header, wire.generation)
    return out


def _hold(array: np.ndarray, header: np.ndarray, generation: int) -> None:
    """The slot stays ``SENT`` while ``array`` (wrapped by every view handed out) lives."""
    weakref.finalize(array, _release, header, generation, os.getpid()).atexit = False


def c_strides(shape: tuple[int, ...]) -> list[int]:
    """The strides (in elements) of a C-contiguous array of ``shape``."""
    strides: list[int] = []
    step = 1
    for size in reversed(shape):
        strides.insert(0, step)
        step *= size
    return strides
