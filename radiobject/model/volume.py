"""``Volume``: one stored image with its geometry. Lazy: pixels are read on demand, by region."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from radiobject import geometry
from radiobject.errors import CorruptDataError, StoreError, StoreNotFoundError, VersionMismatchError
from radiobject.formats.image import ImageData
from radiobject.geometry import Plane
from radiobject.model.checks import located
from radiobject.model.options import WriteOptions
from radiobject.model.scaling import scaled
from radiobject.model.volume_info import VolumeInfo
from radiobject.model.writer import write_image
from radiobject.storage.base import (
    ArrayHandle,
    Backend,
    CompletedRead,
    ReadFuture,
    Region,
    normalize_region,
    region_shape,
)
from radiobject.storage.location import StoreLocation
from radiobject.storage.options import StorageOptions, as_location
from radiobject.storage.registry import detect_backend, get_backend


class Volume:
    """One image (3D or 4D) in a store, addressed by URI; geometry known without pixel I/O.

    Open an existing volume with ``Volume(uri)``; create one with ``from_numpy``, ``from_image``,
    ``from_nifti``, ``from_dicom`` or ``from_tiff``. Objects are cheap, picklable and safe across
    ``fork`` / ``spawn``: the backend handle is reopened lazily in each process.
    """

    def __init__(
        self, uri: str | os.PathLike[str], *, storage: StorageOptions | None = None, info: VolumeInfo | None = None
    ) -> None:
        uri = as_location(uri)
        self._location = StoreLocation(uri, storage or StorageOptions())
        self._handle: ArrayHandle | None = None
        self._pid = -1
        if info is None:
            backend = detect_backend(uri, self._location.storage)
            try:
                handle = backend.open_array(uri)
            except CorruptDataError as exc:
                raise located(exc, uri, self._location.storage) from None
            info = VolumeInfo.from_attrs(None, backend.name, handle.spec, handle.attrs)
            self._handle, self._pid = handle, os.getpid()
        self._info = info

    # ----------------------------------------------------------------- creation
    @classmethod
    def from_image(
        cls,
        uri: str | os.PathLike[str],
        image: ImageData,
        *,
        obs_id: str | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
    ) -> Volume:
        """Writes an ``ImageData`` (from any reader) as a new volume at ``uri``."""
        uri = as_location(uri)
        opts = options or WriteOptions()
        backend = get_backend(opts.backend, storage)
        info = write_image(uri, image, backend, opts, obs_id)
        return cls(uri, storage=storage, info=info)

    @classmethod
    def from_numpy(
        cls,
        uri: str | os.PathLike[str],
        array: np.ndarray,
        affine: np.ndarray | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        obs_id: str | None = None,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
    ) -> Volume:
        """Writes a NumPy array (dtype kept) with its 4x4 affine (identity when omitted)."""
        uri = as_location(uri)
        image = ImageData(np.asarray(array), np.eye(4) if affine is None else affine, dict(metadata or {}), "numpy")
        return cls.from_image(uri, image, obs_id=obs_id, options=options, storage=storage)

    @classmethod
    def from_nifti(
        cls,
        uri: str | os.PathLike[str],
        path: str | os.PathLike[str],
        *,
        reorient: bool = False,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
    ) -> Volume:
        """Ingests a NIfTI-1/2 file (raw dtype; ``scl_slope`` / ``scl_inter`` kept as metadata)."""
        uri = as_location(uri)
        from radiobject.formats.nifti import read_nifti

        return cls.from_image(uri, read_nifti(path, reorient=reorient), options=options, storage=storage)

    @classmethod
    def from_dicom(
        cls,
        uri: str | os.PathLike[str],
        folder_or_files: str | os.PathLike[str] | list[str],
        *,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        philips_scaling: str | None = None,
        resample_tilt: bool | str = False,
    ) -> Volume:
        """Ingests one DICOM series (a folder holding one series, or its files).

        ``philips_scaling`` (``"display"`` / ``"precise"``) and ``resample_tilt`` are those of
        ``formats.dicom.read_dicom_series``; what was applied is in the volume's metadata.
        """
        uri = as_location(uri)
        from radiobject.formats.dicom import read_dicom_series

        image = read_dicom_series(folder_or_files, philips_scaling=philips_scaling, resample_tilt=resample_tilt)
        return cls.from_image(uri, image, options=options, storage=storage)

    @classmethod
    def from_tiff(
        cls,
        uri: str | os.PathLike[str],
        path: str | os.PathLike[str],
        *,
        options: WriteOptions | None = None,
        storage: StorageOptions | None = None,
        series: int | None = None,
    ) -> Volume:
        """Ingests level 0 of one series of a TIFF / OME-TIFF, copied block by block. ``series``:
        ``None`` = the file's one image series (several: a ``TiffError`` listing them), or an index."""
        uri = as_location(uri)
        from radiobject.formats.tiff import read_tiff

        return cls.from_image(uri, read_tiff(path, series), options=options, storage=storage)

    # --------------------------------------------------------------- properties
    @property
    def uri(self) -> str:
        return self._location.uri

    @property
    def location(self) -> StoreLocation:
        """Picklable address of this volume's array."""
        return self._location

    @property
    def info(self) -> VolumeInfo:
        """The catalog facts (shape, dtype, affine, metadata, source)."""
        return self._info

    @property
    def obs_id(self) -> str | None:
        return self._info.obs_id

    @property
    def shape(self) -> tuple[int, ...]:
        return self._info.shape

    @property
    def ndim(self) -> int:
        return len(self._info.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._info.dtype)

    @property
    def chunks(self) -> tuple[int, ...]:
        return self._info.chunks

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel -> RAS+ world (mm), float64, exactly as ingested."""
        return self._info.affine

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the first three array axes."""
        return geometry.spacing(self._info.affine)

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"``."""
        return geometry.orientation(self._info.affine)

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._info.metadata)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"Volume({self.uri!r}, shape={self.shape}, dtype={self.dtype}, orientation={self.orientation})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._location, self._info))

    # -------------------------------------------------------------------- reads
    def _array(self) -> ArrayHandle:
        if self._handle is None or self._pid != os.getpid():
            backend: Backend = get_backend(self._info.backend, self._location.storage)
            try:
                handle = backend.open_array(self.uri)
            except StoreNotFoundError as exc:  # the catalog lists this volume: its array must exist
                raise located(
                    CorruptDataError(self.uri, f"array missing ({exc.reason})"), self.uri, self._location.storage
                ) from None
            except CorruptDataError as exc:
                raise located(exc, self.uri, self._location.storage) from None
            stored = str(handle.attrs.get("version") or "")
            if self._info.version and stored != self._info.version:
                raise VersionMismatchError(
                    self.uri,
                    f"the catalog names version {self._info.version!r} but the "
                    f"stored data is version {stored or 'unknown'!r}",
                )
            self._handle, self._pid = handle, os.getpid()
        return self._handle

    @property
    def fork_safe_reads(self) -> bool:
        """Whether a child forked after this process used tensorstore reads this volume at full speed
        (``ArrayHandle.fork_safe``: local Zarr through the own reader, TileDB; not remote Zarr)."""
        return bool(self._array().fork_safe)

    def read(self, region: Region | Any = (), out: np.ndarray | None = None, *, scaled: bool = False) -> np.ndarray:
        """Reads a region (ints, step-1 slices, Ellipsis), only the chunks it touches.

        ``out``: a preallocated C-contiguous buffer of the region's shape and dtype to fill.
        ``scaled=True`` applies a recorded ``scl_slope`` / ``scl_inter`` and returns float32.
        """
        norm, squeeze = normalize_region(region, self.shape)
        if out is not None and (out.shape != region_shape(norm) or out.dtype != self.dtype or scaled):
            raise ValueError(f"out must be a {region_shape(norm)} {self.dtype} array (and scaled=False)")
        try:
            data = self._array().read(norm, out)
        except CorruptDataError as exc:
            raise located(exc, self.uri, self._location.storage) from None
        if squeeze:
            data = data.reshape(tuple(n for i, n in enumerate(data.shape) if i not in squeeze))
        return self._scale(data) if scaled else data

    def read_async(self, region: Region | Any = (), *, executor: Any = None) -> ReadFuture:
        """Starts reading a region (no integer indices); ``result()`` gives what :meth:`read` would.

        Zarr reads run on tensorstore's threads (I/O and decode without the GIL); other engines
        read on ``executor`` (a ``concurrent.futures`` executor) when given, else at once. Errors
        (``CorruptDataError`` naming store, collection and subject, ...) come from ``result()``.
        """
        norm, squeeze = normalize_region(region, self.shape)
        if squeeze:
            raise IndexError("read_async takes slices only; index the result instead")
        handle = self._array()
        if not handle.async_reads:
            if executor is not None:
                return executor.submit(self.read, norm)
            try:
                return CompletedRead(self.read(norm))
            except Exception as exc:  # noqa: BLE001 - re-raised by result(), where the caller consumes it
                return CompletedRead(error=exc)
        return _LocatedRead(handle.read_async(norm), self.uri, self._location.storage)

    def _scale(self, data: np.ndarray) -> np.ndarray:
        return scaled(data, self._info.metadata, np.float32)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read(key)

    def to_numpy(self, out: np.ndarray | None = None, *, scaled: bool = False) -> np.ndarray:
        """The whole volume (into ``out`` when given)."""
        return self.read((), out, scaled=scaled)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(volume)``: the whole volume's stored voxels (one read, as :meth:`to_numpy`)."""
        data = self.to_numpy()
        return data if dtype is None else data.astype(dtype, copy=False)

    def plane(self, plane: Plane, index: int) -> np.ndarray:
        """An anatomical plane, chosen from the affine (not from the array's axis order).

        ``index`` counts from the L (sagittal), P (coronal) or I (axial) end. The 2D result is laid
        out in RAS order of its two in-plane world axes (first axis toward R or A, second toward A
        or S), so the same anatomy gives the same picture whatever the storage orientation. 4D
        volumes keep trailing axes.
        """
        axis, flip, rest = geometry.plane_axis(self.affine, plane)
        n = self.shape[axis]
        if not -n <= index < n:
            raise IndexError(f"{plane} index {index} out of range for {n} slices ({self.uri})")
        index %= n
        region: list[int | slice] = [slice(None)] * self.ndim
        region[axis] = (n - 1 - index) if flip else index
        data = self.read(tuple(region))
        remaining = [a for a in range(3) if a != axis]
        order = [remaining.index(a) for a, _ in rest] + list(range(2, data.ndim))
        data = data.transpose(order)
        for k, (_, f) in enumerate(rest):
            if f:
                data = np.flip(data, axis=k)
        return np.ascontiguousarray(data)

    def axial(self, index: int) -> np.ndarray:
        """Axial plane ``index`` counted from inferior; result indexed [R-L axis, A-P axis]."""
        return self.plane("axial", index)

    def sagittal(self, index: int) -> np.ndarray:
        """Sagittal plane ``index`` counted from the left; result indexed [A-P axis, S-I axis]."""
        return self.plane("sagittal", index)

    def coronal(self, index: int) -> np.ndarray:
        """Coronal plane ``index`` counted from posterior; result indexed [R-L axis, S-I axis]."""
        return self.plane("coronal", index)

    # the names of radiobject 0.1 (``volume.axial_slice(100)``)
    axial_slice = axial
    sagittal_slice = sagittal
    coronal_slice = coronal

    def n_slices(self, plane: Plane) -> int:
        """Number of planes of a kind (the length of the array axis normal to it)."""
        return self.shape[geometry.plane_axis(self.affine, plane)[0]]

    # ------------------------------------------------------------------- export
    def to_image(self) -> ImageData:
        """Pixels + geometry + metadata as an ``ImageData`` (reads the whole volume)."""
        return ImageData(self.to_numpy(), self.affine, self.metadata, self._info.source)

    def to_nifti(self, path: str | os.PathLike[str]) -> None:
        """Writes a NIfTI file with the exact affine and dtype (scaling written back to the header).

        A volume read from a NIfTI gets its header back field for field; any other (DICOM, TIFF,
        NumPy) says ``xyz_units = mm``, the unit of every stored affine. A dtype NIfTI cannot hold
        (float16) is a ``StoreError`` naming the volume, never a silent conversion (bool is written
        as uint8, NIfTI's smallest integer type).
        """
        from radiobject.formats.nifti import write_nifti
        from radiobject.formats.nifti_header import NIFTI_DTYPES, nifti_export_metadata

        if self.dtype not in NIFTI_DTYPES and self.dtype != np.bool_:
            raise StoreError(
                self.uri,
                f"{self.dtype} voxels have no NIfTI data type, so {os.fspath(path)} cannot hold them "
                f"unchanged; convert explicitly (formats.nifti.write_nifti(path, volume.to_numpy()"
                f".astype(...), volume.affine, volume.metadata))",
            )
        write_nifti(path, self.to_numpy(), self.affine, nifti_export_metadata(self.metadata))


class _LocatedRead:
    """A backend read future whose ``CorruptDataError`` names the volume's store, collection and subject."""

    __slots__ = ("_future", "_storage", "_uri")

    def __init__(self, future: ReadFuture, uri: str, storage: StorageOptions) -> None:
        self._future, self._uri, self._storage = future, uri, storage

    def result(self) -> np.ndarray:
        try:
            return self._future.result()
        except CorruptDataError as exc:
            raise located(exc, self._uri, self._storage) from None

    def cancel(self) -> bool:
        return self._future.cancel()

    def done(self) -> bool:
        return self._future.done()


def _rebuild(location: StoreLocation, info: VolumeInfo) -> Volume:
    return Volume(location.uri, storage=location.storage, info=info)
