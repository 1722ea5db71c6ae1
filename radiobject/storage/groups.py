"""Groups in each engine's own format, so that a store is also a native hierarchy.

A Zarr store is then a valid Zarr v3 hierarchy (root / collections / <name> / volumes / arrays)
that zarr-python, napari or neuroglancer can browse; a TileDB store is a tree of TileDB groups.
Membership is the folder listing, never a member list rewritten on every append.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from radiobject.storage import files
from radiobject.storage.integrity import CHECKSUM_KEY, file_entry
from radiobject.storage.options import StorageOptions


def create_group(backend: str, uri: str, attrs: Mapping[str, Any], storage: StorageOptions) -> None:
    """Creates a group at ``uri`` (overwriting its attributes when it exists). A Zarr group's
    ``zarr.json`` carries a checksum in its attributes (``files.write_json_atomic``)."""
    body = json.loads(json.dumps(dict(attrs)))
    if backend == "zarr":
        files.write_json_atomic(
            files.join(uri, "zarr.json"), {"zarr_format": 3, "node_type": "group", "attributes": body}, storage
        )
        return
    import tiledb

    from radiobject.storage.tiledb_backend import _ctx, _path

    ctx = _ctx(storage, os.getpid())
    path = _path(uri)
    if tiledb.object_type(path, ctx=ctx) != "group":
        files.makedirs(uri, storage)
        tiledb.Group.create(path, ctx=ctx)
    with tiledb.Group(path, mode="w", ctx=ctx) as grp:
        grp.meta["radiobject"] = json.dumps(body)
    write_group_record(uri, storage)


#: The record of a TileDB group's own files (its metadata is binary, written by TileDB).
GROUP_RECORD = "radiobject-group.json"


def group_files(uri: str, storage: StorageOptions) -> dict[str, int]:
    """``{relative path: size}`` of a TileDB group's own files (not its members')."""
    out: dict[str, int] = {}
    for sub in ("__meta", "__group"):
        for name in files.listdir(files.join(uri, sub), storage):
            if not name.startswith("."):
                rel = f"{sub}/{name}"
                out[rel] = len(files.read_bytes(files.join(uri, rel), storage))
    if files.exists(files.join(uri, "__tiledb_group.tdb"), storage):
        out["__tiledb_group.tdb"] = len(files.read_bytes(files.join(uri, "__tiledb_group.tdb"), storage))
    return out


def write_group_record(uri: str, storage: StorageOptions) -> None:
    """Records size and CRC-32C of the group's own files (checked by ``verify``)."""
    entries = {}
    for rel in sorted(group_files(uri, storage)):
        data = files.read_bytes(files.join(uri, rel), storage)
        entries[rel] = file_entry(data)
    files.write_json_atomic(files.join(uri, GROUP_RECORD), {"format": "radiobject-group", "files": entries}, storage)


def group_attrs(backend: str, uri: str, storage: StorageOptions) -> dict[str, Any]:
    """The attributes of the group at ``uri`` (``FileNotFoundError`` when there is none)."""
    if backend == "zarr":
        meta = files.read_json(files.join(uri, "zarr.json"), storage)
        if meta.get("node_type") != "group":
            raise FileNotFoundError(f"{uri}: not a Zarr group")
        return {k: v for k, v in meta.get("attributes", {}).items() if k != CHECKSUM_KEY}
    import tiledb

    from radiobject.storage.tiledb_backend import _ctx, _path

    ctx = _ctx(storage, os.getpid())
    if tiledb.object_type(_path(uri), ctx=ctx) != "group":
        raise FileNotFoundError(f"{uri}: not a TileDB group")
    with tiledb.Group(_path(uri), mode="r", ctx=ctx) as grp:
        return json.loads(grp.meta["radiobject"]) if "radiobject" in grp.meta else {}


def members(uri: str, storage: StorageOptions) -> list[str]:
    """Names of the child nodes of a group (sub-groups and arrays), from the listing."""
    skip = {"zarr.json", "__group", "__meta", "__tiledb_group.tdb"}
    return [
        n for n in files.listdir(uri, storage)
        if n not in skip and not n.startswith(".") and not n.endswith((".json", ".parquet"))
    ]
