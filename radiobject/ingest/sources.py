"""Source fingerprints: what each stored volume was read from, and whether that has changed.

Every ingested volume records, under ``metadata["sources"]`` (in its array attributes and its
``obs`` row), the reader (radiobject version and format reader) and its source files: path, size,
modification time (ns) and a streamed BLAKE2b hash of the bytes. A series of more than
:data:`MAX_LISTED` files is recorded as one aggregate (count, bytes, newest mtime, a hash over the
per-file hashes) so that the catalog stays small.

:func:`fingerprint` computes the record (the loader calls it around the read, so a file that
changes *while* it is read fails its volume); :func:`compare` tells whether the files on disk still
match a record: ``stat`` first, and a hash only when size or mtime differ (or always, ``rehash=True``)
so that a touched but unchanged file is not reported and a resume does not re-read the cohort.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
from collections.abc import Sequence
from typing import Any

from radiobject._version import __version__
from radiobject.errors import ImageReadError
from radiobject.formats.detect import canonicalize, detect_format, read_image
from radiobject.formats.image import ImageData
from radiobject.formats.inputs import regular_file_size

__all__ = [
    "MAX_LISTED",
    "compare",
    "fingerprint",
    "load_fingerprinted",
    "read_source",
    "reader_name",
    "recorded_paths",
    "source_files",
]

#: Series with more files than this are recorded as one aggregate entry.
MAX_LISTED = 32
_BLOCK = 1 << 20


#: The library each format reader is built on (its version is part of the reader string).
_LIBRARIES = {"nifti": "nibabel", "dicom": "pydicom", "tiff": "tifffile"}


@functools.cache
def reader_name(fmt: str) -> str:
    """The reader string stored with each volume, e.g. ``radiobject 0.2.0 nifti reader (nibabel 5.3.2)``."""
    lib = _LIBRARIES.get(fmt)
    if lib is None:
        return f"radiobject {__version__} {fmt} reader"
    try:
        version = importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    return f"radiobject {__version__} {fmt} reader ({lib} {version})"


def source_files(path: str, files: Sequence[str] = ()) -> list[str]:
    """The files a volume is read from: ``files`` when given, the file, or a folder's regular files."""
    if files:
        return [os.path.abspath(f) for f in files]
    if os.path.isdir(path):
        out: list[str] = []

        def unlistable(exc: OSError) -> None:  # a folder that cannot be listed fails the volume
            raise ImageReadError(str(exc.filename or path), f"cannot list folder ({exc.strerror or exc})")

        for dirpath, dirnames, names in os.walk(path, onerror=unlistable):
            dirnames.sort()
            out.extend(os.path.abspath(os.path.join(dirpath, n)) for n in sorted(names) if not n.startswith("."))
        return out
    return [os.path.abspath(path)]


def _hash(path: str) -> str:
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _stat(path: str) -> tuple[int, int]:
    regular_file_size(path)  # a FIFO / device is never opened for hashing
    st = os.stat(path)
    return int(st.st_size), int(st.st_mtime_ns)


def _entry(path: str) -> dict[str, Any]:
    size, mtime = _stat(path)
    return {"path": path, "size": size, "mtime_ns": mtime, "blake2b": _hash(path)}


def _aggregate(entries: list[dict[str, Any]]) -> dict[str, Any]:
    root = os.path.commonpath([e["path"] for e in entries])
    names = [os.path.relpath(e["path"], root) for e in entries]
    h = hashlib.blake2b(digest_size=32)
    for name, e in zip(names, entries, strict=True):  # relative names: a moved folder hashes the same
        h.update(f"{name}\0{e['size']}\0{e['blake2b']}\n".encode())
    return {
        "path": root,
        "count": len(entries),
        "names": names,
        "size": sum(e["size"] for e in entries),
        "mtime_ns": max(e["mtime_ns"] for e in entries),
        "blake2b": h.hexdigest(),
    }


def fingerprint(paths: Sequence[str], fmt: str) -> dict[str, Any]:
    """``{"reader": ..., "files": [...]}`` for ``paths`` (aggregated past :data:`MAX_LISTED`)."""
    entries = [_entry(p) for p in sorted(paths)]  # sorted: the order a reader lists files in does not matter
    listed = entries if len(entries) <= MAX_LISTED else [_aggregate(entries)]
    return {"reader": reader_name(fmt), "files": listed}


def recorded_paths(record: dict[str, Any]) -> list[str]:
    """The source file paths a fingerprint record lists (expanded from an aggregate)."""
    stored = list(record.get("files") or [])
    if len(stored) == 1 and "count" in stored[0]:
        return [os.path.join(stored[0]["path"], n) for n in stored[0].get("names", [])]
    return [str(e["path"]) for e in stored]


def _stats(paths: Sequence[str]) -> list[tuple[int, int]]:
    return [_stat(p) for p in paths]


def read_source(
    path: str,
    fmt: str,
    canonical: bool = False,
    files: Sequence[str] = (),
    dicom_options: dict[str, Any] | None = None,
    tiff_series: int | None = None,
) -> ImageData:
    """One volume by ``formats.detect.read_image``; a TIFF of the series ``tiff_series`` when one
    is chosen (``None``: its one image series, else a ``TiffError`` listing them)."""
    if fmt != "tiff" or tiff_series is None:
        return read_image(path, fmt, canonical, files, dicom_options)
    from radiobject.formats.tiff import read_tiff

    image = read_tiff(path, tiff_series)
    return canonicalize(image) if canonical else image


def load_fingerprinted(
    path: str,
    fmt: str = "auto",
    canonical: bool = False,
    files: Sequence[str] = (),
    dicom_options: dict[str, Any] | None = None,
    tiff_series: int | None = None,
) -> ImageData:
    """Reads one volume (:func:`read_source`) and adds ``metadata["sources"]``.

    ``dicom_options``: keyword options of the DICOM reader (e.g. ``philips_scaling``);
    ``tiff_series``: the series of a TIFF holding several images.

    The sources are stat'ed before and after the read and hashed; a source that changes during
    the read (size or mtime differ) is an ``ImageReadError`` naming it, never a mixed record.
    """
    fmt = detect_format(path) if fmt == "auto" else fmt
    paths = source_files(path, files)
    before = _stats(paths)
    record = fingerprint(paths, fmt)
    image = read_source(path, fmt, canonical, files, dicom_options, tiff_series)
    after = _stats(paths)
    for p, b, a in zip(paths, before, after, strict=True):
        if a != b:
            raise ImageReadError(p, "changed while it was being read; re-run the ingest")
    return ImageData(image.array, image.affine, {**image.metadata, "sources": record}, image.source)


def compare(record: dict[str, Any], paths: Sequence[str], *, rehash: bool = False) -> str | None:
    """Why the files ``paths`` no longer match ``record`` (``None``: unchanged).

    Files at the recorded paths are compared by ``stat`` and, when size or mtime differ (or with
    ``rehash``), by hash; files at other paths (a moved cohort) always by hash, so the same bytes
    elsewhere are unchanged. Reasons name the file.
    """
    stored = sorted(record.get("files") or [], key=lambda e: str(e.get("path")))
    paths = sorted(paths)
    if len(stored) == 1 and "count" in stored[0]:
        return _compare_aggregate(stored[0], paths, rehash)
    if len(stored) != len(paths):
        return f"{len(stored)} source file(s) ingested, {len(paths)} now ({paths[0] if paths else 'none'})"
    for e, p in zip(stored, paths, strict=True):
        try:
            size, mtime = _stat(p)
        except ImageReadError as exc:
            return f"{p} vanished ({exc.reason})"
        moved = p != e["path"]
        if not rehash and not moved and (size, mtime) == (e["size"], e["mtime_ns"]):
            continue
        was = f" (ingested from {e['path']})" if moved else ""
        if size != e["size"]:
            return f"{p} changed (size {e['size']} -> {size} bytes){was}"
        if _hash(p) != e["blake2b"]:
            return f"{p} changed (content differs from the ingested bytes){was}"
    return None


def _compare_aggregate(agg: dict[str, Any], paths: Sequence[str], rehash: bool) -> str | None:
    try:
        stats = _stats(paths)
    except ImageReadError as exc:
        return f"{exc.path} vanished ({exc.reason})"
    if len(paths) != agg["count"]:
        return f"{agg['path']}: {agg['count']} file(s) ingested, {len(paths)} now"
    if not rehash and sum(s for s, _ in stats) == agg["size"] and max(m for _, m in stats) == agg["mtime_ns"]:
        return None
    now = _aggregate([_entry(p) for p in paths])
    if now["blake2b"] != agg["blake2b"]:
        return f"{agg['path']}: the series changed (content of its {agg['count']} file(s) differs)"
    return None
