"""radiobject: a chunked store for 3D medical images, built for training.

Public names: ``Volume``, ``VolumeCollection``, ``RadiObject``, ``WriteOptions``,
``StorageOptions``, ``Codec``, ``ImageData`` and the typed errors in ``radiobject.errors``.
"""

from radiobject._version import __version__
from radiobject.errors import (
    AlignmentError,
    CorruptDataError,
    DicomError,
    DuplicateIdError,
    FormatVersionError,
    ImageReadError,
    IncompleteStoreError,
    InvalidIdError,
    NiftiReadError,
    NotFoundError,
    RadiObjectError,
    RemoteStorageError,
    SourceChangedError,
    SourceTimeoutError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
    TiffError,
)
from radiobject.formats.image import ImageData
from radiobject.model.collection import VolumeCollection
from radiobject.model.lossy import Lossy, LossyLabelError
from radiobject.model.options import WriteOptions
from radiobject.model.radi_object import RadiObject
from radiobject.model.volume import Volume
from radiobject.storage import Codec, StorageOptions, StoreLocation

__all__ = [
    "AlignmentError",
    "Codec",
    "CorruptDataError",
    "DicomError",
    "DuplicateIdError",
    "FormatVersionError",
    "ImageData",
    "ImageReadError",
    "IncompleteStoreError",
    "InvalidIdError",
    "Lossy",
    "LossyLabelError",
    "NiftiReadError",
    "NotFoundError",
    "RadiObjectError",
    "RemoteStorageError",
    "SourceChangedError",
    "SourceTimeoutError",
    "StorageOptions",
    "StoreError",
    "StoreExistsError",
    "StoreLocation",
    "StoreLockedError",
    "StoreNotFoundError",
    "TiffError",
    "RadiObject",
    "Volume",
    "VolumeCollection",
    "WriteOptions",
    "__version__",
]

# The ingest engine registers the model's file constructors (radiobject.model.engine): imported
# here, by the root, so that the model never imports the layer above it.
import radiobject.ingest.entry_points  # noqa: F401 - imported for its effect: registration
