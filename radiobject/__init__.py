"""radiobject: a chunked store for 3D medical images, built for training.

Public names: ``Volume``, ``VolumeCollection``, ``RadiObject``, ``WriteOptions``,
``StorageOptions``, ``Codec``, ``ImageData`` and the typed errors in ``radiobject.errors``.
"""

from radiobject.model.collection import VolumeCollection
from radiobject.errors import (
    AlignmentError,
    CorruptDataError,
    DicomError,
    DuplicateIdError,
    FormatVersionError,
    ImageReadError,
    InvalidIdError,
    NiftiReadError,
    NotFoundError,
    RadiObjectError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
    TiffError,
)
from radiobject.formats.image import ImageData
from radiobject.model.lossy import Lossy, LossyLabelError
from radiobject.model.options import WriteOptions
from radiobject.model.radi_object import RadiObject
from radiobject.storage import Codec, StorageOptions, StoreLocation
from radiobject.model.volume import Volume

__all__ = [
    "AlignmentError",
    "Codec",
    "CorruptDataError",
    "DicomError",
    "DuplicateIdError",
    "FormatVersionError",
    "ImageData",
    "ImageReadError",
    "InvalidIdError",
    "Lossy",
    "LossyLabelError",
    "NiftiReadError",
    "NotFoundError",
    "RadiObjectError",
    "StorageOptions",
    "StoreError",
    "StoreExistsError",
    "StoreLocation",
    "StoreNotFoundError",
    "TiffError",
    "RadiObject",
    "Volume",
    "VolumeCollection",
    "WriteOptions",
]
__version__ = "0.2.0"
