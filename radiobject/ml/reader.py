"""``VolumeReader``: a frozen, picklable handle on (subjects x collections) of a store, for loaders.

The reader carries only plain data (the store's ``StoreLocation``, collection names, subject and
obs IDs, shapes and affines) plus a cache object. Everything that holds an open backend handle (the
``RadiObject``, its collections and ``Volume`` objects) is created lazily in the process that reads
and is re-created when the process ID changes, so one reader may be pickled into DataLoader workers
under ``fork``, ``spawn`` or ``forkserver``, or inherited by a forked child, without ever sharing a
TileDB context or a tensorstore handle across processes.

Reads go through the cache at the granularity of the volume's storage chunks: a region is
assembled from the cached chunks it touches, and the missing ones are read from the store in one
chunk-aligned read (see :mod:`radiobject.ml.cache.chunks`). When the reader's whole decoded cohort
fits the cache's budget, whole volumes are cached instead (one lookup and one copy per patch),
until one of them is evicted (then chunks, for good, in that process). Without a cache only the
chunks a region touches are decoded, straight into the caller's buffer.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radiobject.errors import AlignmentError, NotFoundError
from radiobject.geometry import plane_axis
from radiobject.ml.cache import Cache, NoCache, cache_key
from radiobject.ml.cache import chunks as chunk_cache
from radiobject.ml.cache.chunks import CacheUse, chunk_key_prefix, read_chunked, read_whole, whole_key
from radiobject.ml.regions import Region, _label_dtype, _pad_into, _patch_slices, as_region
from radiobject.model.alignment import misalignment
from radiobject.model.radi_object import RadiObject
from radiobject.model.scaling import apply_scaling, scaled
from radiobject.model.volume import Volume
from radiobject.storage.location import StoreLocation

__all__ = ["VolumeReader", "as_region"]


@dataclass(frozen=True, eq=False)
class VolumeReader:
    """Subjects x collections of one store, readable from any process.

    Attributes:
        location: where the store lives (``radi.location``).
        modalities: image collections, stacked as channels in this order.
        label: the label collection, or ``None``.
        subject_ids: the subjects, in dataset order.
        obs_ids: per subject, the obs ID in each of ``modalities`` (+ ``label`` last when set).
        shapes: per subject, the spatial (first three axes) shape, shared by all its volumes.
        affines: per subject, the 4x4 affine flattened to 16 floats.
        cache: where decoded volumes are kept (``NoCache()`` by default).
    """

    location: StoreLocation
    modalities: tuple[str, ...]
    label: str | None
    subject_ids: tuple[str, ...]
    obs_ids: tuple[tuple[str, ...], ...]
    shapes: tuple[tuple[int, ...], ...]
    affines: tuple[tuple[float, ...], ...]
    cache: Cache = field(default_factory=NoCache)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_radi(
        cls,
        radi: RadiObject,
        modalities: Sequence[str] | str,
        label: str | None = None,
        *,
        cache: Cache | None = None,
        subjects: Sequence[str] | None = None,
        atol: float = 1e-4,
    ) -> VolumeReader:
        """A reader over ``radi``'s subjects (or ``subjects``) having a volume in every collection.

        Reads only the ``obs`` tables (no pixels). Raises ``NotFoundError`` for an unknown
        collection or a subject that lacks one of the collections, and ``AlignmentError`` when a
        subject's volumes differ in spatial shape or affine.
        """
        mods = (modalities,) if isinstance(modalities, str) else tuple(modalities)
        if not mods:
            raise ValueError("VolumeReader: give at least one image collection in modalities")
        names = [*mods, label] if label else list(mods)
        wanted = list(subjects) if subjects is not None else radi.obs_subject_ids
        rows: dict[str, dict[str, tuple[str, tuple[int, ...], tuple[float, ...]]]] = {}
        for name in names:
            obs = radi[name].obs
            per: dict[str, tuple[str, tuple[int, ...], tuple[float, ...]]] = {}
            for r in obs.to_dict("records"):
                sid = str(r["obs_subject_id"])
                if sid in per:
                    raise AlignmentError(sid, f"has several volumes in collection {name!r}; select one per subject")
                per[sid] = (str(r["obs_id"]), tuple(int(s) for s in r["shape"]), tuple(float(v) for v in r["affine"]))
            rows[name] = per
        obs_ids, shapes, affines = [], [], []
        for sid in wanted:
            missing = [name for name in names if sid not in rows[name]]
            if missing:
                raise NotFoundError("subject", sid, f"collection {missing[0]!r} of {radi.uri}")
            found = [(name, *rows[name][sid]) for name in names]
            reason = misalignment([(name, "", shape, np.asarray(aff)) for name, _, shape, aff in found], atol)
            if reason is not None:
                raise AlignmentError(sid, reason)
            obs_ids.append(tuple(oid for _, oid, _, _ in found))
            shapes.append(tuple(found[0][2][:3]))
            affines.append(found[0][3])
        return cls(
            radi.location,
            mods,
            label,
            tuple(wanted),
            tuple(obs_ids),
            tuple(shapes),
            tuple(affines),
            cache if cache is not None else NoCache(),
        )

    def subset(self, indices: Sequence[int]) -> VolumeReader:
        """A reader over the subjects at ``indices`` (same store, same cache)."""
        idx = [int(i) for i in indices]
        return VolumeReader(
            self.location,
            self.modalities,
            self.label,
            tuple(self.subject_ids[i] for i in idx),
            tuple(self.obs_ids[i] for i in idx),
            tuple(self.shapes[i] for i in idx),
            tuple(self.affines[i] for i in idx),
            self.cache,
        )

    def with_cache(self, cache: Cache) -> VolumeReader:
        """The same reader reading through ``cache``."""
        return VolumeReader(
            self.location, self.modalities, self.label, self.subject_ids, self.obs_ids, self.shapes, self.affines, cache
        )

    # --------------------------------------------------------- per-process state
    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    def _local(self) -> dict[str, Any]:
        """This process's open objects; rebuilt after ``fork`` (PID check) or unpickling."""
        local = self.__dict__.get("_proc")
        if local is None or local["pid"] != os.getpid():
            local = {
                "pid": os.getpid(),
                "radi": None,
                "volumes": {},
                "channels": {},
                "prefixes": {},
                "policy": CacheUse(),
                "whole": None,
                "whole_keys": {},
                "stored": {},
                "ticks": itertools.count(),
            }
            object.__setattr__(self, "_proc", local)
        return local

    @property
    def radi(self) -> RadiObject:
        """The store, opened once per process from ``location``."""
        local = self._local()
        if local["radi"] is None:
            local["radi"] = RadiObject.open(self.location)
        return local["radi"]

    def volume(self, index: int, collection: str) -> Volume:
        """The ``Volume`` of subject ``index`` in ``collection`` (opened once per process)."""
        local = self._local()
        key = (index, collection)
        vol = local["volumes"].get(key)
        if vol is None:
            names = [*self.modalities, self.label] if self.label else list(self.modalities)
            try:
                oid = self.obs_ids[index][names.index(collection)]
            except ValueError:
                raise NotFoundError("collection", collection, "this reader") from None
            vol = self.radi[collection].volume(oid)
            local["volumes"][key] = vol
        return vol

    # -------------------------------------------------------------------- facts
    def __len__(self) -> int:
        return len(self.subject_ids)

    def __repr__(self) -> str:
        return (
            f"VolumeReader({self.location.uri!r}, modalities={list(self.modalities)}, label={self.label!r}, "
            f"subjects={len(self)}, cache={type(self.cache).__name__})"
        )

    def affine(self, index: int) -> np.ndarray:
        """4x4 float64 affine of subject ``index``."""
        return np.asarray(self.affines[index], dtype=np.float64).reshape(4, 4)

    def spacing(self, index: int) -> np.ndarray:
        """Voxel size (mm) along the three array axes."""
        return np.sqrt((self.affine(index)[:3, :3] ** 2).sum(axis=0))

    def index_of(self, subject_id: str) -> int:
        """Position of ``subject_id`` in this reader."""
        try:
            return self.subject_ids.index(subject_id)
        except ValueError:
            raise NotFoundError("subject", subject_id, repr(self)) from None

    def num_channels(self, index: int = 0) -> int:
        """Image channels of a subject: one per 3D modality, ``t`` per 4D (x, y, z, t) modality."""
        local = self._local()
        if index not in local["channels"]:
            local["channels"][index] = sum(
                1 if self.volume(index, m).ndim == 3 else int(np.prod(self.volume(index, m).shape[3:]))
                for m in self.modalities
            )
        return local["channels"][index]

    # -------------------------------------------------------------------- reads
    def read_raw(self, index: int, collection: str, region: Region | None = None) -> np.ndarray:
        """A region (spatial slices; trailing axes whole) of one volume, stored dtype, through the cache.

        With a cache, the region is assembled from the volume's cached chunks (decoded once per
        process, or once per node for shared-memory / disk caches); missing chunks are read in one
        chunk-aligned read and offered to the cache (whole volumes instead while this reader's
        decoded cohort fits the cache's budget). Without one, only the chunks the region touches
        are read.
        """
        vol = self.volume(index, collection)
        if region is None:
            region = tuple(slice(0, s) for s in vol.shape[:3])
        spatial = tuple(
            slice(0 if r.start is None else int(r.start), n if r.stop is None else int(r.stop))
            for r, n in zip(tuple(region)[:3], vol.shape[:3], strict=True)
        )
        policy = self._local()["policy"]
        if not isinstance(self.cache, NoCache) and self._whole_volumes():
            out = np.empty(tuple(r.stop - r.start for r in spatial) + vol.shape[3:], dtype=vol.dtype)
            self._read_whole(index, collection, spatial, out)
            return out
        if isinstance(self.cache, NoCache) or not policy.use(self.cache):
            return vol.read(spatial + (slice(None),) * (vol.ndim - 3))
        out = np.empty(tuple(r.stop - r.start for r in spatial) + vol.shape[3:], dtype=vol.dtype)
        return read_chunked(vol, self.cache, self._chunk_prefix(index, collection), spatial, out, policy=policy)

    def _chunk_prefix(self, index: int, collection: str) -> str:
        """Cache-key prefix of the chunks of one volume (its version included: never served stale)."""
        prefixes = self._local()["prefixes"]
        got = prefixes.get((index, collection))
        if got is None:
            vol = self.volume(index, collection)
            key = cache_key(
                self.location.uri, collection, self.obs_ids[index][self._col(collection)], version=vol.info.version
            )
            got = prefixes[(index, collection)] = chunk_key_prefix(key, vol.chunks)
        return got

    def _whole_volumes(self) -> bool:
        """Whether this process caches whole volumes: the decoded cohort fits the cache's budget.

        Decided on the first read; turns ``False`` for good once one of the volumes this process
        stored was evicted or not kept (see :meth:`_read_whole`).
        """
        local = self._local()
        whole = local["whole"]
        if whole is None:
            names = [*self.modalities, self.label] if self.label else list(self.modalities)
            per_voxel = 0
            for name in names:  # dtype and trailing axes per collection, from its first volume
                vol = self.volume(0, name)
                per_voxel += vol.dtype.itemsize * int(np.prod(vol.shape[3:], dtype=np.int64))
            cohort = sum(int(np.prod(s, dtype=np.int64)) for s in self.shapes) * per_voxel
            whole = local["whole"] = 0 < cohort <= chunk_cache.WHOLE_VOLUMES_UP_TO * self.cache.max_bytes
        return whole

    def _read_whole(self, index: int, collection: str, spatial: Region, out: np.ndarray) -> None:
        """Fill ``out`` (``(*region, *trailing)``) from the cached whole volume (read and stored on a miss)."""
        local = self._local()
        keys = local["whole_keys"]
        key = keys.get((index, collection))
        if key is None:
            vol = self.volume(index, collection)
            key = keys[(index, collection)] = whole_key(
                cache_key(
                    self.location.uri, collection, self.obs_ids[index][self._col(collection)], version=vol.info.version
                )
            )
        vol = self.volume(index, collection)
        began = next(local["ticks"])  # atomic: threads of one process share this state
        got = read_whole(vol, self.cache, key, spatial + (slice(None),) * (vol.ndim - 3), out)
        if got == "dropped":
            local["whole"] = False  # not kept: the cohort does not fit after all
        elif got == "stored":
            if local["stored"].get(key, began + 1) < began:  # stored before this read began: evicted since
                local["whole"] = False
            local["stored"][key] = next(local["ticks"])

    def _col(self, collection: str) -> int:
        names = [*self.modalities, self.label] if self.label else list(self.modalities)
        return names.index(collection)

    def read_image(self, index: int, region: Region | None = None, *, dtype: Any = np.float32) -> np.ndarray:
        """Channels-first image ``(C, *region)``: modalities stacked (4D ones contribute ``t`` channels).

        Intensities are converted to ``dtype`` with any stored NIfTI ``scl_slope`` / ``scl_inter``.
        """
        parts = []
        for m in self.modalities:
            data = self.read_raw(index, m, region)
            vol = self.volume(index, m)
            if data.ndim == 3:
                data = data[None]  # a view: the dtype conversion below makes the only copy
            else:  # (x, y, z, t...) -> channels first
                data = np.moveaxis(data.reshape(*data.shape[:3], -1), -1, 0)
            parts.append(scaled(data, vol.metadata, dtype))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def read_label(self, index: int, region: Region | None = None) -> np.ndarray:
        """Label ``(1, *region)`` in its stored integer dtype (bool -> uint8; >32-bit unsigned -> int64)."""
        if self.label is None:
            raise ValueError(f"{self!r} has no label collection")
        data = np.asarray(self.read_raw(index, self.label, region))
        return _label_dtype(data)[None]

    def read_patch(
        self,
        index: int,
        origin: Sequence[int] | np.ndarray,
        patch_size: Sequence[int],
        *,
        with_label: bool = True,
        dtype: Any = np.float32,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Image ``(C, *patch)`` and label ``(1, *patch)`` at ``origin``; outside the volume is 0."""
        from radiobject.ml.sampling import patch_slices

        shape = self.shapes[index]
        src, dst = patch_slices(origin, patch_size, shape)
        inside = all(d.start == 0 and d.stop == p for d, p in zip(dst, patch_size, strict=True))
        image = self.read_image(index, src, dtype=dtype)
        label = self.read_label(index, src) if (with_label and self.label) else None
        if not inside:
            image = _pad_into(image, dst, patch_size)
            label = _pad_into(label, dst, patch_size) if label is not None else None
        return np.ascontiguousarray(image), (np.ascontiguousarray(label) if label is not None else None)

    def read_patch_into(
        self,
        index: int,
        origin: Sequence[int] | np.ndarray,
        patch_size: Sequence[int],
        image: np.ndarray,
        label: np.ndarray | None = None,
    ) -> None:
        """Writes the patch at ``origin`` into preallocated ``image`` ``(C, *patch)`` (and ``label`` ``(1, *patch)``).

        The only copy is the one into ``image``: from the cached volume, or, without a cache, the
        store decodes straight into the buffer when the patch lies inside the volume. Outside the
        volume the buffers are zero-filled.
        """
        src, dst, inside = _patch_slices(origin, patch_size, self.shapes[index])
        if not inside:
            image[...] = 0
            if label is not None:
                label[...] = 0
        c = 0
        for m in self.modalities:
            vol = self.volume(index, m)
            n = 1 if vol.ndim == 3 else int(np.prod(vol.shape[3:]))
            target = image[(slice(c, c + n), *dst)]
            self._read_into(index, m, src, target)
            apply_scaling(target, vol.metadata)
            c += n
        if label is not None and self.label is not None:
            self._read_into(index, self.label, src, label[(slice(0, 1), *dst)])

    def _read_into(self, index: int, collection: str, src: Region, target: np.ndarray) -> None:
        """``target`` ``(n, *region)``: the region of one volume, channels first, converted to its dtype."""
        vol = self.volume(index, collection)
        if vol.ndim in (3, 4) and not isinstance(self.cache, NoCache) and self._whole_volumes():
            self._read_whole(
                index, collection, tuple(src)[:3], target[0] if vol.ndim == 3 else np.moveaxis(target, 0, -1)
            )
            return
        policy = self._local()["policy"]
        if isinstance(self.cache, NoCache) or not policy.use(self.cache):  # no cache, or one that does not pay
            if vol.ndim == 3 and target[0].flags.c_contiguous and target.dtype == vol.dtype:
                vol.read(src, out=target[0])
                return
            block = vol.read(tuple(src) + (slice(None),) * (vol.ndim - 3))
        elif vol.ndim in (3, 4):  # assembled from cached chunks straight into the batch buffer
            read_chunked(
                vol,
                self.cache,
                self._chunk_prefix(index, collection),
                tuple(src)[:3],
                target[0] if vol.ndim == 3 else np.moveaxis(target, 0, -1),
                policy=policy,
            )
            return
        else:
            block = self.read_raw(index, collection, src)
        if vol.ndim == 3:
            np.copyto(target[0], block, casting="unsafe")
        else:
            np.copyto(target, np.moveaxis(block.reshape(*block.shape[:3], -1), -1, 0), casting="unsafe")

    def label_dtype(self) -> np.dtype:
        """The dtype labels are delivered in (see ``read_label``)."""
        if self.label is None:
            raise ValueError(f"{self!r} has no label collection")
        return _label_dtype(np.empty(0, self.volume(0, self.label).dtype)).dtype

    def slice_region(self, index: int, plane: str | int, position: int) -> tuple[Region, int]:
        """Region of one 2D slice: ``plane`` is ``"axial"`` / ``"coronal"`` / ``"sagittal"`` or an array axis."""
        axis = plane if isinstance(plane, int) else plane_axis(self.affine(index), plane)[0]  # type: ignore[arg-type]
        shape = self.shapes[index]
        if not 0 <= position < shape[axis]:
            raise IndexError(
                f"slice {position} out of range for axis {axis} of size {shape[axis]} "
                f"(subject {self.subject_ids[index]!r})"
            )
        region = [slice(0, s) for s in shape]
        region[axis] = slice(position, position + 1)
        return tuple(region), int(axis)

    def scattered_points(
        self, index: int, points: np.ndarray, collection: str | None = None, *, threads: int = 8
    ) -> np.ndarray:
        """Values at integer voxel ``points`` (n, 3) of one volume; each needed chunk read once, in parallel."""
        from radiobject.ml.points import scattered_points

        name = collection or self.modalities[0]
        return scattered_points(
            self.volume(index, name),
            points,
            cache=self.cache,
            threads=threads,
            key_prefix=(self.location.uri, name, self.obs_ids[index][self._col(name)]),
        )
