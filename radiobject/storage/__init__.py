"""Storage: the backend interface, its Zarr and TileDB implementations, files and tables."""

from radiobject.storage.base import (
    ArrayHandle,
    ArraySpec,
    Backend,
    Codec,
    default_chunks,
)
from radiobject.storage.location import StoreLocation
from radiobject.storage.options import StorageOptions
from radiobject.storage.registry import (
    BACKEND_NAMES,
    DEFAULT_BACKEND,
    detect_backend,
    get_backend,
)

__all__ = [
    "ArrayHandle",
    "ArraySpec",
    "Backend",
    "BACKEND_NAMES",
    "Codec",
    "DEFAULT_BACKEND",
    "StorageOptions",
    "StoreLocation",
    "default_chunks",
    "detect_backend",
    "get_backend",
]
