"""What every backend's groups share: membership from the folder listing (never a member list
rewritten on every append), and the checksum record of a TileDB group's own binary files.

Each backend writes groups in its engine's own format (``create_group`` / ``group_attrs`` on the
backend), so a Zarr store is a valid Zarr v3 hierarchy (root / collections / <name> / volumes /
arrays) that zarr-python, napari or neuroglancer can browse, and a TileDB store a tree of TileDB groups.
"""

from __future__ import annotations

from radiobject.storage import files
from radiobject.storage.checksums import file_entry
from radiobject.storage.options import StorageOptions

#: The record of a TileDB group's own files (its metadata is binary, written by TileDB).
GROUP_RECORD = "radiobject-group.json"


def group_files(uri: str, storage: StorageOptions) -> list[str]:
    """Relative paths of a TileDB group's own files (not its members'), from listings only."""
    out: list[str] = []
    for sub in ("__meta", "__group"):
        out += [f"{sub}/{name}" for name in files.listdir(files.join(uri, sub), storage) if not name.startswith(".")]
    if files.exists(files.join(uri, "__tiledb_group.tdb"), storage):
        out.append("__tiledb_group.tdb")
    return out


def write_group_record(uri: str, storage: StorageOptions) -> None:
    """Records size and CRC-32C of the group's own files (checked by ``verify``)."""
    entries = {}
    for rel in sorted(group_files(uri, storage)):
        data = files.read_bytes(files.join(uri, rel), storage)
        entries[rel] = file_entry(data)
    files.write_json_atomic(files.join(uri, GROUP_RECORD), {"format": "radiobject-group", "files": entries}, storage)


def members(uri: str, storage: StorageOptions) -> list[str]:
    """Names of the child nodes of a group (sub-groups and arrays), from the listing."""
    skip = {"zarr.json", "__group", "__meta", "__tiledb_group.tdb"}
    return [
        n
        for n in files.listdir(uri, storage)
        if n not in skip and not n.startswith(".") and not n.endswith((".json", ".parquet"))
    ]
