"""``VolumeReader``: a frozen, picklable handle on (subjects x collections) of a store, for loaders.

The reader carries only plain data (the store's ``StoreLocation``, collection names, subject and
obs IDs, shapes and affines) plus a cache object. Everything that holds an open backend handle (the
``RadiObject``, its collections and ``Volume`` objects) is created lazily in the process that reads
and is re-created when the process ID changes, so one reader may be pickled into DataLoader workers
under ``fork``, ``spawn`` or ``forkserver``, or inherited by a forked child, without ever sharing a
TileDB context or a tensorstore handle across processes.

Per process a reader keeps at most ``MAX_OPEN_VOLUMES`` volumes open (least recently used closed)
and opens the versions it was built on by their paths, without loading the catalogs again
(:mod:`radiobject.ml._reader_open`): memory per process does not grow with the cohort.

Reads go through the cache at the granularity of the volume's storage chunks (the mixin
:class:`radiobject.ml._reader_cache.CacheReads`); a sampler may start the reads of the next patches
ahead (the mixin :class:`radiobject.ml._reader_prefetch.PrefetchReads`: ``prefetch_patch``,
``cancel_prefetch``), and a sample then takes its data from the read already in flight.
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
from radiobject.ml._reader_cache import CacheReads
from radiobject.ml._reader_open import OpenVolumes, catalog_rows, open_volume
from radiobject.ml._reader_prefetch import PrefetchReads
from radiobject.ml.cache import Cache, NoCache
from radiobject.ml.cache.chunks import CacheUse
from radiobject.ml.regions import Region, _label_dtype, _pad_into, _patch_slices, as_region
from radiobject.model.alignment import misalignment
from radiobject.model.radi_object import RadiObject
from radiobject.model.scaling import apply_scaling, scaled
from radiobject.model.volume import Volume
from radiobject.storage.location import StoreLocation

__all__ = ["VolumeReader", "as_region"]


@dataclass(frozen=True, eq=False)
class VolumeReader(CacheReads, PrefetchReads):
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
        versions: per subject, the version of each volume (same order as ``obs_ids``) when the
            reader was built; every process reads exactly these (a volume replaced meanwhile is
            read whole in its old version, consistent with ``shapes`` / ``affines``; one removed
            since is a typed error). Empty: the current versions.
    """

    location: StoreLocation
    modalities: tuple[str, ...]
    label: str | None
    subject_ids: tuple[str, ...]
    obs_ids: tuple[tuple[str, ...], ...]
    shapes: tuple[tuple[int, ...], ...]
    affines: tuple[tuple[float, ...], ...]
    cache: Cache = field(default_factory=NoCache)
    versions: tuple[tuple[str, ...], ...] = ()

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
        rows = {name: catalog_rows(radi[name].obs, name, name == label) for name in names}
        obs_ids, shapes, affines, versions = [], [], [], []
        for sid in wanted:
            missing = [name for name in names if sid not in rows[name]]
            if missing:
                raise NotFoundError("subject", sid, f"collection {missing[0]!r} of {radi.uri}")
            found = [(name, *rows[name][sid]) for name in names]
            first = found[0]
            same = all(f[2][:3] == first[2][:3] and f[3] == first[3] for f in found[1:])  # equal: aligned
            if not same:
                reason = misalignment([(name, "", shape, np.asarray(aff)) for name, _, shape, aff, _ in found], atol)
                if reason is not None:
                    raise AlignmentError(sid, reason)
            obs_ids.append(tuple(oid for _, oid, _, _, _ in found))
            versions.append(tuple(v for *_, v in found))
            shapes.append(tuple(first[2][:3]))
            affines.append(first[3])
        return cls(
            radi.location,
            mods,
            label,
            tuple(wanted),
            tuple(obs_ids),
            tuple(shapes),
            tuple(affines),
            cache if cache is not None else NoCache(),
            tuple(versions),
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
            tuple(self.versions[i] for i in idx) if self.versions else (),
        )

    def with_cache(self, cache: Cache) -> VolumeReader:
        """The same reader reading through ``cache``."""
        return VolumeReader(
            self.location,
            self.modalities,
            self.label,
            self.subject_ids,
            self.obs_ids,
            self.shapes,
            self.affines,
            cache,
            self.versions,
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
                "volumes": OpenVolumes(),
                "channels": {},
                "prefixes": {},
                "policy": CacheUse(),
                "whole": None,
                "whole_keys": {},
                "stored": {},
                "ticks": itertools.count(),
                "prefetch": None,
                "prefetch_pool": None,
                "read_here": False,
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
        """The ``Volume`` of subject ``index`` in ``collection``: opened once per process, kept open
        among the :data:`~radiobject.ml._reader_open.MAX_OPEN_VOLUMES` most recently read."""
        key = (index, collection)
        opened: OpenVolumes = self._local()["volumes"]
        vol = opened.get(key)
        if vol is None:
            vol = opened.put(key, open_volume(self, index, collection))
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
        return _label_dtype(data, self.label)[None]

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
            if self.volume(index, self.label).dtype.kind == "f":  # checked: whole numbers only
                label[(slice(0, 1), *dst)] = _label_dtype(self.read_raw(index, self.label, src), self.label)
            else:
                self._read_into(index, self.label, src, label[(slice(0, 1), *dst)])

    def label_dtype(self, subjects: Sequence[int] = (0,)) -> np.dtype:
        """The dtype labels of ``subjects`` are delivered in together (see ``read_label``): one that
        holds every one of their stored dtypes (no label value is ever truncated)."""
        if self.label is None:
            raise ValueError(f"{self!r} has no label collection")
        label = self.label
        return np.result_type(*{_label_dtype(np.empty(0, self.volume(i, label).dtype)).dtype for i in subjects})

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
