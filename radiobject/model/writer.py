"""The single write path: an ``ImageData`` (eager or lazy) into one backend array.

Every way of creating a volume (``from_numpy``, ``from_nifti``, collection ingest, view
materialisation) ends here, so geometry, dtype and metadata are handled in exactly one place.
"""

from __future__ import annotations

import itertools
import json
import math
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from radiobject.formats.image import ArrayLike, ImageData
from radiobject.geometry import validate_affine
from radiobject.model.lossy import Lossy, prepare_lossy
from radiobject.model.options import WriteOptions
from radiobject.model.volume_info import VolumeInfo
from radiobject.storage.base import (
    MAX_SHARD_VOXELS,
    ArraySpec,
    Backend,
    Region,
    default_chunks,
    default_shards,
)

#: Bytes per block when copying a lazy source (bounded memory whatever the volume size).
BLOCK_BYTES = 256 << 20


def _chunks_for(shape: tuple[int, ...], options: WriteOptions) -> tuple[int, ...]:
    if options.chunks is None:
        return default_chunks(shape)
    spatial = tuple(min(c, s) for c, s in zip(options.chunks, shape, strict=False))
    return spatial + tuple(1 for _ in shape[len(spatial) :])


def blocks(shape: tuple[int, ...], block: tuple[int, ...]) -> Iterator[Region]:
    """Regions tiling ``shape`` with ``block``-shaped pieces (edges clipped), in C order."""
    ranges = [range(0, s, b) for s, b in zip(shape, block, strict=True)]
    for starts in itertools.product(*ranges):
        yield tuple(slice(st, min(st + b, s)) for st, b, s in zip(starts, block, shape, strict=True))


def copy_blocks(shape: tuple[int, ...], shards: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Shard-aligned copy blocks under ``BLOCK_BYTES`` (whole shards, several when small)."""
    block = [min(b, s) for b, s in zip(shards, shape, strict=True)]
    for axis in range(len(block)):  # grow along the first axes while under budget
        while block[axis] < shape[axis] and math.prod(block) * 2 * itemsize <= BLOCK_BYTES:
            block[axis] = min(shape[axis], block[axis] * 2)
    return tuple(block)


def volume_attrs(image: ImageData, obs_id: str | None, version: str | None = None) -> dict[str, Any]:
    """The attributes stored with the array: enough to rebuild the ``Volume`` without the catalog.

    ``version``: the token the catalog row will carry (a fresh one when omitted).
    """
    return {
        "radiobject_volume": 1,
        "obs_id": obs_id,
        "version": version or uuid.uuid4().hex,
        "affine": [float(v) for v in image.affine.ravel()],
        "metadata": json.loads(json.dumps(image.metadata, default=_json_default)),
        "source": image.source,
    }


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class _NativeOrder:
    """A lazy source read in native byte order (``ArrayLike``): what the store holds, and what
    lossy rounding works on (it reads the float bits)."""

    def __init__(self, source: ArrayLike, dtype: np.dtype) -> None:
        self.source, self.dtype = source, dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.source.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.source[key]).astype(self.dtype, copy=False)


def write_image(
    uri: str,
    image: ImageData,
    backend: Backend,
    options: WriteOptions,
    obs_id: str | None = None,
    version: str | None = None,
) -> VolumeInfo:
    """Writes ``image`` as a new array at ``uri`` and returns its ``VolumeInfo``.

    NumPy arrays are written in one call; lazy arrays (TIFF, zarr) are copied shard-aligned block
    by block, so memory stays bounded by ``BLOCK_BYTES``. With ``options.lossy`` (a resolved
    ``Lossy``) the voxels are rounded first and the achieved quality is recorded in the metadata.

    Raises (before anything is created, naming ``uri`` and the image's source):
        StoreError: the backend cannot hold the image (``Backend.check_storable``: its dtype, its
            number of axes); the same text from every write path and backend.
        LossyError: ``options.lossy`` does not apply to the image (``LossyLabelError``: a label map).

    When the copy fails after the array was created (a lazy source that raises part-way, Ctrl-C),
    the partial array is removed before the error propagates: nothing is left that reads as a
    volume with fill values where the copy stopped.
    """
    affine = validate_affine(image.affine, f"{image.source or uri}: affine")
    if options.lossy is not None and not isinstance(options.lossy, Lossy):
        raise ValueError(f"{uri}: per-collection lossy settings must be resolved (WriteOptions.for_collection)")
    shape = image.shape
    dtype = backend.check_storable(uri, shape, image.dtype, image.source)  # before any work, whatever the backend
    array: ArrayLike = image.array
    if np.dtype(image.dtype) != dtype:  # another byte order: converted once, here
        array = array.astype(dtype) if isinstance(array, np.ndarray) else _NativeOrder(array, dtype)
    image = ImageData(array, affine, image.metadata, image.source)
    if isinstance(options.lossy, Lossy):
        image = prepare_lossy(image, options.lossy, f"{uri}: {image.source}" if image.source else uri)
    chunks = _chunks_for(shape, options)
    eager = isinstance(image.array, np.ndarray)
    cap = MAX_SHARD_VOXELS if eager else max(1, min(MAX_SHARD_VOXELS, BLOCK_BYTES // dtype.itemsize))
    shards = default_shards(shape, chunks, cap) if backend.name == "zarr" else None
    spec = ArraySpec(shape, dtype.name, chunks, options.codec, shards)
    handle = backend.create_array(uri, spec, volume_attrs(image, obs_id, version))
    try:
        full = tuple(slice(0, s) for s in shape)
        if isinstance(image.array, np.ndarray):  # eager
            handle.write(full, image.array.astype(dtype, copy=False))
        else:
            for region in blocks(shape, copy_blocks(shape, shards or chunks, dtype.itemsize)):
                handle.write(region, np.asarray(image.array[region]).astype(dtype, copy=False))
        handle.seal()  # integrity record: what the array consists of (checked by readers and verify)
    except BaseException as exc:  # a source failing mid-copy, Ctrl-C: no partial array that reads as fill
        try:
            backend.delete_array(uri)
        except Exception as cleanup:  # noqa: BLE001 - the write's error is the one to raise
            exc.add_note(f"the partial array at {uri} could not be removed: {cleanup}")
        raise
    return VolumeInfo.from_attrs(obs_id, backend.name, spec, handle.attrs)


def info_to_attrs(info: VolumeInfo) -> Mapping[str, Any]:
    """Inverse of ``VolumeInfo.from_attrs`` for copies between stores."""
    return {"affine": list(info.affine_flat), "metadata": info.metadata, "source": info.source}
