"""Integrity records: what must exist in a stored array, and checksums of small documents.

Every byte a store holds is covered by a checksum:

- volume data by the engine's own per-chunk checksums (Zarr: ``crc32c`` on each inner chunk and on
  each shard index; TileDB: a SHA-256 filter on every attribute tile), verified on every read;
- every file of an array by its *integrity record* (``radiobject-integrity.json`` inside the
  array): relative path, size and CRC-32C of each file, sealed by a checksum of its own. Opening a
  volume checks that every recorded file exists with its size (so a missing shard or fragment is
  an error, never the fill value) and the hashes of the small metadata files;
- JSON documents (markers, group metadata) by a ``radiobject_checksum`` member (see :func:`seal_json`);
- table fragments by a digest in their file name (see :func:`fragment_name_digest`).

Arrays written before records existed (no ``radiobject_integrity`` attribute) read as before and
are reported by ``verify`` as having no checksum record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from radiobject.errors import CorruptDataError, FormatVersionError
from radiobject.storage import files
from radiobject.storage.checksums import (
    entry_matches,
    file_entry,
    json_checksum_state,
    parse_checked_json,
    seal_json,
)
from radiobject.storage.faults import remote_errors
from radiobject.storage.options import StorageOptions, is_remote, strip_file_scheme

#: The record's file name inside an array folder.
MANIFEST = "radiobject-integrity.json"
#: The array attribute that says "this array has a record, and it must be there".
ATTR_KEY = "radiobject_integrity"
#: The integrity format written now; readers refuse newer ones (``FormatVersionError``).
INTEGRITY_VERSION = 1
_FORMAT = "radiobject-integrity"


# ------------------------------------------------------------------ array records
def walk(uri: str, storage: StorageOptions) -> dict[str, int]:
    """``{relative path: size}`` of every file under ``uri`` (hidden temporaries excluded)."""
    out: dict[str, int] = {}
    if is_remote(uri):
        fs = files.remote_fs(storage)
        root = uri.split("://", 1)[1].rstrip("/")
        try:
            with remote_errors(uri):
                found = fs.find(root, detail=True)
        except FileNotFoundError:
            return out
        for path, info in found.items():
            rel = path[len(root) + 1 :]
            if rel and not any(p.startswith(".") for p in rel.split("/")):
                out[rel] = int(info.get("size") or 0)
        return out
    base = strip_file_scheme(uri)
    for dirpath, dirnames, names in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for n in names:
            if n.startswith("."):
                continue
            full = os.path.join(dirpath, n)
            out[os.path.relpath(full, base).replace(os.sep, "/")] = os.path.getsize(full)
    return out


def build_record(uri: str, storage: StorageOptions, backend: str) -> dict[str, Any]:
    """The integrity record of the array at ``uri``: every file's size and CRC-32C (read back)."""
    entries = {}
    for rel in sorted(walk(uri, storage)):
        if rel == MANIFEST:
            continue
        data = files.read_bytes(files.join(uri, rel), storage)
        entries[rel] = file_entry(data)
    return seal_json({"format": _FORMAT, "version": INTEGRITY_VERSION, "backend": backend, "files": entries})


def write_record(uri: str, record: Mapping[str, Any], storage: StorageOptions) -> None:
    """Writes the record atomically as ``uri/radiobject-integrity.json``."""
    files.write_bytes_atomic(files.join(uri, MANIFEST), json.dumps(record, indent=1, sort_keys=True).encode(), storage)


def record_flag() -> dict[str, Any]:
    """The attribute value that marks an array as sealed."""
    return {"version": INTEGRITY_VERSION, "record": MANIFEST}


def check_flag(uri: str, attrs: Mapping[str, Any]) -> bool:
    """True when the array's attributes say a record must exist; ``FormatVersionError`` when
    the array was sealed by a newer integrity format than this code reads."""
    flag = attrs.get(ATTR_KEY)
    if not flag:
        return False
    version = int(flag.get("version", 0)) if isinstance(flag, Mapping) else 0
    if version > INTEGRITY_VERSION or version < 1:
        raise FormatVersionError(uri, f"integrity format {version} (this radiobject reads 1-{INTEGRITY_VERSION})")
    return True


def read_record(uri: str, storage: StorageOptions) -> dict[str, Any]:
    """The array's record, checked against its own checksum (``CorruptDataError`` when missing)."""
    path = files.join(uri, MANIFEST)
    try:
        data = files.read_bytes(path, storage)
    except FileNotFoundError:
        raise CorruptDataError(
            uri, "integrity record missing (the array is marked as having one)", part=MANIFEST
        ) from None
    record = parse_checked_json(data, path)
    if not isinstance(record, dict) or record.get("format") != _FORMAT or not isinstance(record.get("files"), dict):
        raise CorruptDataError(uri, "integrity record is not a radiobject integrity record", part=MANIFEST)
    if json_checksum_state(record) != "ok":
        raise CorruptDataError(uri, "integrity record has no valid checksum", part=MANIFEST)
    if int(record.get("version", 0)) > INTEGRITY_VERSION:
        raise FormatVersionError(uri, f"integrity record format {record.get('version')} is newer than this radiobject")
    return record


def _stat_size(uri: str, storage: StorageOptions) -> int | None:
    if is_remote(uri):
        try:
            with remote_errors(uri):
                return int(files.remote_fs(storage).info(uri.split("://", 1)[1]).get("size") or 0)
        except FileNotFoundError:
            return None
    try:
        return os.path.getsize(strip_file_scheme(uri))
    except FileNotFoundError:
        return None


def problems(
    uri: str,
    record: Mapping[str, Any],
    storage: StorageOptions,
    *,
    hash_file: Callable[[str], bool],
    listing: Mapping[str, int] | None = None,
    known: Mapping[str, bytes] | None = None,
) -> Iterator[tuple[str, str]]:
    """``(file, reason)`` for each recorded file that is missing, has another size or (when
    ``hash_file(rel)``) another checksum. ``listing``: a walk of the array, to report files that
    are not in the record too. ``known``: bytes already read (checked without reading again)."""
    entries: Mapping[str, Any] = record["files"]
    for rel, want in entries.items():
        if listing is not None:
            size = listing.get(rel)
        elif known is not None and rel in known:
            size = len(known[rel])
        else:
            size = _stat_size(files.join(uri, rel), storage)
        if size is None:
            yield rel, "recorded file is missing"
            continue
        if size != int(want["size"]):
            yield rel, f"size {size} bytes, recorded {want['size']} (truncated or replaced)"
            continue
        if hash_file(rel):
            try:
                held = known.get(rel) if known is not None else None
                data = held if held is not None else files.read_bytes(files.join(uri, rel), storage)
            except CorruptDataError as exc:  # not a regular file
                yield rel, exc.reason
                continue
            if not entry_matches(data, want):
                yield rel, "content does not match its recorded checksum"
    if listing is not None:
        for rel in sorted(set(listing) - set(entries) - {MANIFEST}):
            yield rel, "file not in the integrity record (added after the volume was written)"


def raise_first(uri: str, found: Iterator[tuple[str, str]]) -> None:
    """Raises ``CorruptDataError`` for the first ``(file, reason)`` of ``found``, if any."""
    for rel, reason in found:
        raise CorruptDataError(uri, reason, part=rel)
