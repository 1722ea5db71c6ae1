"""Batch collation: pass-through for batches already collated, typed errors (or padding) for ragged batches.

Validation and inference batches of whole volumes have one shape per subject; stacking two shapes
fails inside torch with a bare ``RuntimeError``. :func:`collate` raises :class:`BatchShapeError`
naming each subject and its shape instead; :func:`pad_collate` zero-pads every tensor of a batch to
the largest shape (at the end of each axis; ``batch["shape"]`` keeps each sample's own shape, so a
caller can crop outputs back). Samples holding MONAI ``MetaTensor`` s are collated with MONAI's
``list_data_collate`` (batched affines and meta data).

Inside a DataLoader worker process, a collated dict batch leaves as a :class:`WireBatch`: its small
tensors (``index``, ``affine``, ``spacing``, ``patch_origin``: at most :data:`INLINE_BYTES` each)
travel inside the pickle, and only the large ones through torch's shared memory (each
shared-memory tensor costs the main process a file-descriptor hand-over, more than the bytes of a
small one). The large ones are written into reused shared-memory slots
(:mod:`radiobject.ml._slots`; a worker no longer pays for new pages with every batch), which the
main process frees when it drops the batch. The main process receives a plain ``dict`` with the
same keys, order, values, dtypes and shapes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info

from radiobject.errors import RadiObjectError
from radiobject.ml import _slots
from radiobject.ml.errors import WorkerFailure, sample_error

__all__ = [
    "INLINE_BYTES",
    "BatchShapeError",
    "CollatedBatch",
    "WireBatch",
    "batch_buffer",
    "collate",
    "pad_collate",
    "to_device",
]

#: Tensors of a worker's batch up to this size travel inside the pickle (see :class:`WireBatch`).
INLINE_BYTES = 64 << 10


class BatchShapeError(RadiObjectError, ValueError):
    """Samples of one batch have different shapes (use ``batch_size=1`` or ``pad_collate=True``)."""

    def __init__(self, key: str, shapes: dict[str, tuple[int, ...]]) -> None:
        self.key, self.shapes = key, shapes
        listed = ", ".join(f"{sid!r}: {tuple(s)}" for sid, s in shapes.items())
        super().__init__(
            f"cannot stack {key!r} of different shapes in one batch ({listed}); use batch_size=1, "
            "pad_collate=True (zero-pads to the largest shape), or a transform that crops / resizes"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.shapes))


class CollatedBatch(list):  # a list of samples to any other collate_fn
    """A batch read straight into one buffer (``__getitems__``), usable by any ``collate_fn``.

    :func:`collate` / :func:`pad_collate` return :attr:`batch` as it is (no copy). To any other
    collate function (``torch.utils.data.DataLoader(loader.dataset, ...)``, MONAI's
    ``DataLoader``) it is the list of its samples, each a dict of views into the batch, so
    ``default_collate`` / ``list_data_collate`` stack them as they would samples read one by one.
    """

    def __init__(self, batch: dict[str, Any]) -> None:
        super().__init__()
        self.batch = batch
        self._n = next((len(v) for v in batch.values() if isinstance(v, (torch.Tensor, list))), 0)

    def _sample(self, i: int) -> dict[str, Any]:
        return {
            k: (v[i] if isinstance(v, (torch.Tensor, list)) and len(v) == self._n else v) for k, v in self.batch.items()
        }

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._sample(j) for j in range(self._n)[i]]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._sample(i % self._n)

    def __iter__(self) -> Any:
        return (self._sample(i) for i in range(self._n))

    def __reduce__(self) -> tuple[Any, ...]:
        return (CollatedBatch, (self.batch,))


def batch_buffer(shape: tuple[int, ...], dtype: Any) -> tuple[torch.Tensor, np.ndarray]:
    """An uninitialised batch buffer as ``(tensor, its numpy view)``.

    Inside a DataLoader worker process it lies in shared memory (as ``default_collate`` allocates
    there), so handing the batch to the main process copies nothing.
    Large buffers are reused slots (:mod:`radiobject.ml._slots`): the training process frees one
    when it drops the batch.
    """
    if get_worker_info() is None:
        arr = np.empty(shape, dtype)
        return torch.from_numpy(arr), arr
    tensor = _shared_tensor(tuple(int(d) for d in shape), torch.from_numpy(np.empty(0, dtype)).dtype)
    return tensor, tensor.numpy()


@functools.cache
def _numpy_dtype(dtype: torch.dtype) -> bool:
    try:
        torch.empty(0, dtype=dtype).numpy()
    except (TypeError, RuntimeError):
        return False
    return True


def _shared_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory: a reused slot (:mod:`radiobject.ml._slots`) or new memory."""
    itemsize = torch.empty(0, dtype=dtype).element_size()
    nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
    taken = _slots.take(nbytes) if _numpy_dtype(dtype) else None  # a slot is received as a numpy array
    if taken is None:
        storage, offset = torch.UntypedStorage._new_shared(nbytes), 0
    else:
        storage, offset = taken
    return torch.empty(0, dtype=dtype).set_(storage, offset // itemsize, shape, _slots.c_strides(shape))


class WireBatch(dict):
    """A collated batch leaving a worker process: unpickles as a plain ``dict`` (see the module doc)."""

    def __reduce__(self) -> tuple[Any, ...]:
        items: list[tuple[Any, Any, int | None]] = []
        for key, value in self.items():
            how: int | None = None  # None: as it is; _INLINE: a numpy array; _SLOT: a slot (_slots.Wire)
            if type(value) is torch.Tensor and value.device.type == "cpu" and not value.requires_grad:
                if _slots.is_slot(value):
                    wire = _slots.outgoing(value)
                    if wire is None:  # a second tensor over one slot: its memory would be unprotected
                        value = value.clone()
                    else:
                        value, how = wire, _SLOT
                elif value.nbytes <= INLINE_BYTES:
                    try:  # dtypes numpy lacks (bfloat16, ...) or conj / neg views travel as tensors
                        value, how = value.numpy(), _INLINE
                    except (TypeError, RuntimeError):
                        how = None
            items.append((key, value, how))
        return (_unwire, (items,))


_INLINE, _SLOT = 0, 1


def _unwire(items: list[tuple[Any, Any, int | None]]) -> dict[Any, Any]:
    out = {}
    for key, value, how in items:
        if how is None:
            out[key] = value
        elif how == _INLINE:
            out[key] = torch.from_numpy(value)
        else:
            out[key] = _slots.incoming(value)
    return out


def _outgoing(batch: Any) -> Any:
    """``batch`` as it should leave this process: a ``WireBatch`` in a worker, unchanged otherwise."""
    if type(batch) is dict and get_worker_info() is not None:
        return WireBatch(batch)
    return batch


def _ids(samples: Sequence[dict[str, Any]]) -> list[str]:
    return [str(s.get("subject_id", f"sample {i}")) for i, s in enumerate(samples)]


def _ragged(samples: Sequence[Any]) -> str | None:
    if not samples or not isinstance(samples[0], dict):
        return None
    for key, value in samples[0].items():
        if isinstance(value, torch.Tensor) and len({tuple(s[key].shape) for s in samples}) > 1:
            return str(key)
    return None


def _is_meta(samples: Sequence[Any]) -> bool:
    return (
        bool(samples)
        and isinstance(samples[0], dict)
        and any(type(v).__name__ == "MetaTensor" for v in samples[0].values())
    )


def _flatten(batch: Any) -> Any:
    """Samples that are lists of dicts (``RandCropByPosNegLabeld(num_samples=n)``, ...) become one flat list.

    As MONAI's ``list_data_collate`` does: ``batch_size`` samples of ``n`` crops give one batch of
    ``batch_size * n``, not ``n`` batches.
    """
    if (
        isinstance(batch, list)
        and batch
        and all(isinstance(item, (list, tuple)) and item and all(isinstance(s, dict) for s in item) for item in batch)
    ):
        return [s for item in batch for s in item]
    return batch


def _guarded(fn: Any, batch: Any) -> Any:
    """``fn(batch)``; an error becomes typed (``SampleError`` naming the subjects unless already a
    radiobject error) and, inside a worker process, is returned as a ``WorkerFailure`` (the loader
    raises it intact in the training process)."""
    if isinstance(batch, WorkerFailure):
        return batch
    try:
        return fn(batch)
    except Exception as exc:  # noqa: BLE001 - typed and named below
        error: BaseException = exc
        if not isinstance(exc, RadiObjectError):
            try:
                who = _ids(batch) if isinstance(batch, list) and all(isinstance(s, dict) for s in batch) else []
            except Exception:  # noqa: BLE001 - naming is best effort
                who = []
            kinds = sorted({type(s).__name__ for s in batch}) if isinstance(batch, list) else [type(batch).__name__]
            error = sample_error(
                f"collating a batch of subjects {who} failed (samples of type {kinds}; a transform must return "
                f"a dict of tensors): {type(exc).__name__}: {exc}",
                exc,
            )
        if get_worker_info() is not None:
            return WorkerFailure(error)
        raise error from exc


def collate(batch: Any) -> Any:
    """``default_collate``; a batch already collated by ``__getitems__`` passes through; ragged -> typed error."""
    return _guarded(_collate, batch)


def pad_collate(batch: Any) -> Any:
    """Like :func:`collate`, but tensors of different shapes are zero-padded to the largest shape.

    Adds ``batch["shape"]``: ``(B, ndim)`` int64, each sample's unpadded ``image`` shape.
    """
    return _guarded(_pad_collate, batch)


def _collate(batch: Any) -> Any:
    if isinstance(batch, CollatedBatch):
        return _outgoing(batch.batch)
    if isinstance(batch, dict):
        return _outgoing(batch)
    batch = _flatten(batch)
    key = _ragged(batch)
    if key is not None:
        raise BatchShapeError(key, {sid: tuple(s[key].shape) for sid, s in zip(_ids(batch), batch, strict=True)})
    if _is_meta(batch):
        from monai.data.utils import list_data_collate

        return list_data_collate(batch)
    return _outgoing(_stack(batch))


def _stack(batch: Any) -> Any:
    """``default_collate(batch)``; in a worker, the large tensors of dict samples are stacked into slots.

    Same keys, values, dtypes and shapes as ``default_collate``, which would put each stacked
    tensor into new shared memory (see :mod:`radiobject.ml._slots`).
    """
    if get_worker_info() is None or not _slots.ENABLED or not batch or any(type(s) is not dict for s in batch):
        return default_collate(batch)
    out = {}
    for key in batch[0]:
        values = [s[key] for s in batch]
        first = values[0]
        if (
            type(first) is torch.Tensor
            and first.device.type == "cpu"
            and first.nbytes * len(values) >= _slots.MIN_BYTES
            and all(
                type(v) is torch.Tensor
                and v.dtype == first.dtype
                and v.shape == first.shape
                and v.device.type == "cpu"
                and not v.requires_grad
                for v in values
            )
        ):
            out[key] = torch.stack(values, 0, out=_shared_tensor((len(values), *first.shape), first.dtype))
        else:
            out[key] = default_collate(values)
    return out


def _pad_collate(batch: Any) -> Any:
    batch = _flatten(batch)
    if isinstance(batch, CollatedBatch):
        return _outgoing(batch.batch)
    if isinstance(batch, dict) or _ragged(batch) is None:
        out = _collate(batch)
        if isinstance(out, dict) and "image" in out and "shape" not in out and not isinstance(batch, dict):
            out["shape"] = torch.tensor([list(s["image"].shape) for s in batch], dtype=torch.int64)
        return out
    shapes = torch.tensor([list(s["image"].shape) for s in batch], dtype=torch.int64)
    padded = []
    for s in batch:
        item = dict(s)
        for key, value in s.items():
            if not isinstance(value, torch.Tensor) or value.ndim < 2:
                continue
            target = [max(int(b[key].shape[d]) for b in batch) for d in range(value.ndim)]
            pad: list[int] = []
            for d in reversed(range(value.ndim)):
                pad += [0, target[d] - int(value.shape[d])]
            item[key] = torch.nn.functional.pad(value, pad) if any(pad) else value
        padded.append(item)
    out = _collate(padded)
    out["shape"] = shapes
    return out  # a WireBatch in a worker (from collate): "shape" travels inline too


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = True) -> Any:
    """Moves every tensor in a (nested) batch to ``device``; other values are left as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not isinstance(batch, str):
        return (
            type(batch)(to_device(v, device, non_blocking) for v in batch)
            if not hasattr(batch, "_fields")
            else type(batch)(*(to_device(v, device, non_blocking) for v in batch))
        )
    return batch
