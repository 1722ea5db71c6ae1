"""Bounded, checked access to a DICOM tree: walk, stat, open, decompress.

* Only regular files are opened: every entry is ``stat``-ed first; FIFOs, devices, sockets (and
  links to them, such as a link to ``/dev/zero``) are listed as skipped with the reason and never
  opened, so nothing can block or stream without end.
* A folder that cannot be listed, a file that cannot be stat-ed or opened (permission denied, I/O
  error, dangling link) raises :class:`UnreadableInputError` naming the path: the series / subject
  fails instead of being built from the remaining slices.
* Sizes are bounded: a plain file larger than the memory budget, a gzip stream that expands past it
  (a gzip bomb) and a series whose declared pixel data would need more are refused up front with
  :class:`InputTooLargeError`. The budget is that of one image read, ``min(16 GiB, half the
  physical memory)``, overridden by the ``RADIOBJECT_MAX_IMAGE_BYTES`` environment variable.
"""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from collections.abc import Iterator

from radiobject.formats.dicom.errors import InputTooLargeError, NotDicomError, UnreadableInputError
from radiobject.formats.inputs import file_kind, max_image_bytes

_BLOCK = 1 << 20


def _budget_text(limit: int) -> str:
    return f"limit {limit / 2**20:.1f} MiB; set RADIOBJECT_MAX_IMAGE_BYTES to raise it"


def check_regular(path: str) -> int:
    """Size of a regular file, after ``stat`` (never ``open``).

    Raises:
        NotDicomError: a FIFO, device, socket or folder (skipped as not an image file).
        UnreadableInputError: it cannot be stat-ed (permission denied, dangling link, I/O error).
        InputTooLargeError: it is larger than the memory budget.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UnreadableInputError(path, f"cannot stat ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise NotDicomError(path, f"not a regular file (a {file_kind(st.st_mode)}): never opened")
    limit = max_image_bytes()
    if st.st_size > limit:
        raise InputTooLargeError(path, f"file of {st.st_size / 2**20:.1f} MiB ({_budget_text(limit)})")
    return int(st.st_size)


def read_prefix(path: str, n: int) -> bytes:
    """The first ``n`` bytes of a regular file (:func:`check_regular` first)."""
    check_regular(path)
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise UnreadableInputError(path, f"cannot read ({exc.strerror or exc})") from exc


def gunzip_bounded(path: str) -> bytes:
    """Decompress a gzip file completely (CRC and length checked) within the memory budget.

    Raises:
        InputTooLargeError: the stream expands past the budget (read stops there).
        NotDicomError: not a valid gzip stream (damaged, truncated, bad CRC).
        UnreadableInputError: the file cannot be read.
    """
    limit = max_image_bytes()
    parts: list[bytes] = []
    total = 0
    try:
        with gzip.open(path, "rb") as gz:
            while True:
                block = gz.read(_BLOCK)
                if not block:
                    break
                total += len(block)
                if total > limit:
                    raise InputTooLargeError(
                        path, f"gzip stream expands past {limit / 2**20:.1f} MiB (gzip bomb?; {_budget_text(limit)})"
                    )
                parts.append(block)
    except (InputTooLargeError, UnreadableInputError):
        raise
    except PermissionError as exc:
        raise UnreadableInputError(path, f"cannot read ({exc.strerror or exc})") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise NotDicomError(path, f"gzip file cannot be decompressed: {exc}") from exc
    return b"".join(parts)


def walk_files(root: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Regular files under ``root`` (recursive, sorted) and ``(path, reason)`` of skipped entries.

    Hidden names (``.*``) are ignored; links to folders are not followed (listed as skipped);
    FIFOs, devices and sockets are skipped with the reason, never opened.

    Raises:
        UnreadableInputError: a folder cannot be listed or an entry cannot be stat-ed.
    """
    files: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path, kind in _walk(root):
        if kind == "file":
            files.append(path)
        else:
            skipped.append((path, kind))
    return files, skipped


def _walk(folder: str) -> Iterator[tuple[str, str]]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise UnreadableInputError(folder, f"cannot list folder ({exc.strerror or exc})") from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_link = entry.is_symlink()
            st = os.stat(entry.path)
        except OSError as exc:
            raise UnreadableInputError(entry.path, f"cannot stat ({exc.strerror or exc})") from exc
        if stat.S_ISDIR(st.st_mode):
            if is_link:
                yield entry.path, "link to a folder: not followed"
            else:
                yield from _walk(entry.path)
        elif stat.S_ISREG(st.st_mode):
            yield entry.path, "file"
        else:
            yield entry.path, f"not a regular file (a {file_kind(st.st_mode)}): never opened"


__all__ = ["check_regular", "gunzip_bounded", "max_image_bytes", "read_prefix", "walk_files"]
