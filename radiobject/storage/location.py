"""A picklable address of a store (or of one array in it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from radiobject.storage.options import StorageOptions


@dataclass(frozen=True)
class StoreLocation:
    """Where a store lives and how to reach it. Frozen and picklable: worker processes reopen from it."""

    uri: str
    storage: StorageOptions = field(default_factory=StorageOptions)

    def child(self, *parts: str) -> StoreLocation:
        """The location of a path inside this one."""
        from radiobject.storage.files import join

        return StoreLocation(join(self.uri, *parts), self.storage)
