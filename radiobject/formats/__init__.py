"""File formats: readers and writers that turn a file into an :class:`ImageData` and back.

Nothing here knows about stores; the data model (``radiobject.model.volume`` and friends) writes an
``ImageData`` into a store.
"""

from radiobject.formats.image import ImageData

__all__ = ["ImageData"]
