"""Where one converted image goes, and how it is published so that a failure leaves nothing that
looks complete.

* **Local folder**: the image is written under a hidden temporary name beside its final name
  (``OUT/.<name>.ome.zarr.partial-<random>``) and renamed into place only once every level and
  the NGFF metadata are written. An interrupted run (exception, Ctrl-C, kill) leaves at most the
  hidden ``.partial-*`` folder, never ``OUT/<name>.ome.zarr``.
* **S3** (``s3://bucket/prefix``) has no rename: the level arrays are written first and the
  group's top-level metadata (``zarr.json``, or ``.zgroup`` / ``.zattrs`` for NGFF 0.4), which is
  what makes the prefix an image for every OME-Zarr reader, is written last. A prefix holding
  arrays but no top-level metadata is a leftover of an interrupted run and is replaced.

Output names come from input file names; every output path is checked to be a single safe path
component inside the folder (or prefix) the user named.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radiobject.errors import StoreError, StoreExistsError
from radiobject.storage import files
from radiobject.storage.options import StorageOptions, is_remote, strip_file_scheme

__all__ = ["OutputTarget", "UnsafeOutputNameError", "output_target", "safe_output_name", "zarr_store"]

#: Top-level metadata documents of an OME-Zarr image group (v3, then v2).
GROUP_DOCUMENTS = ("zarr.json", ".zgroup", ".zattrs")
PARTIAL_TAG = ".partial-"
_MAX_NAME = 200


class UnsafeOutputNameError(StoreError, ValueError):
    """An output name (from an input file name or metadata) would leave the output folder."""


def safe_output_name(name: str, where: str) -> str:
    """``name`` when it is one harmless path component, else :class:`UnsafeOutputNameError`.

    Refused: empty, ``.`` / ``..`` or any ``..``, a leading ``.`` (hidden names are reserved for
    partial outputs), path separators, NUL / control characters, more than 200 characters.
    """
    reason = None
    if not name or name.strip() != name:
        reason = "is empty or has leading / trailing white space"
    elif len(name) > _MAX_NAME:
        reason = f"is longer than {_MAX_NAME} characters"
    elif "/" in name or "\\" in name or ":" in name:
        reason = "contains a path separator or ':'"
    elif ".." in name or name.startswith("."):
        reason = "contains '..' or starts with '.'"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        reason = "contains a control character"
    if reason is not None:
        raise UnsafeOutputNameError(where, f"output name {name!r} {reason}")
    return name


def zarr_store(uri: str, storage: StorageOptions) -> Any:
    """A zarr-python store for a local folder or an ``s3://`` prefix (through the one storage
    layer: ``radiobject.storage.files.remote_fs`` with these ``StorageOptions``)."""
    if not is_remote(uri):
        from zarr.storage import LocalStore

        return LocalStore(strip_file_scheme(uri))
    from zarr.storage import FsspecStore

    return FsspecStore(files.remote_fs(storage, asynchronous=True), path=uri.split("://", 1)[1].rstrip("/"))


@dataclass(frozen=True)
class OutputTarget:
    """The final address of one image and the address it is written at (picklable: workers open
    the level arrays from it).

    Attributes:
        final: the address the user will see (``OUT/<name>.ome.zarr``).
        work: where the arrays are written (a hidden sibling locally; ``final`` on S3).
        storage: how to reach ``s3://`` (endpoint, credentials), ignored for local paths.
    """

    final: str
    work: str
    storage: StorageOptions = field(default_factory=StorageOptions)

    @property
    def remote(self) -> bool:
        """True for an ``s3://`` output."""
        return is_remote(self.final)

    def level_uri(self, level: int) -> str:
        """Address of one level array (in the work location)."""
        return files.join(self.work, str(level))

    def store(self) -> Any:
        """The zarr store of the work location."""
        return zarr_store(self.work, self.storage)

    def stored_bytes(self) -> int:
        """Bytes stored under the published image (all levels and metadata)."""
        if self.remote:
            return int(files.remote_fs(self.storage).du(self.final.split("://", 1)[1]))
        return sum(f.stat().st_size for f in Path(self.final).rglob("*") if f.is_file())

    def is_complete(self) -> bool:
        """True when a finished image exists at ``final`` (its top-level metadata is there)."""
        return any(files.exists(files.join(self.final, d), self.storage) for d in GROUP_DOCUMENTS)

    def prepare(self, overwrite: bool) -> None:
        """Checks the final address and clears the work location.

        Raises:
            StoreExistsError: a finished image exists and ``overwrite`` is false (it is kept).
            UnsafeOutputNameError: locally, ``final`` is a symbolic link (never written through).
        """
        if not self.remote and os.path.islink(strip_file_scheme(self.final)):
            raise UnsafeOutputNameError(self.final, "output is a symbolic link; refusing to write through it")
        if self.is_complete() and not overwrite:
            raise StoreExistsError(self.final, "output exists (use overwrite)")
        if self.remote:
            # Not complete, or to be replaced: drop the top-level metadata first so that the
            # prefix stops being an image at once, then whatever arrays are left.
            self.drop_group_documents(self.final)
            files.remove(self.final, self.storage)
        else:
            files.remove(self.work, self.storage)

    def drop_group_documents(self, uri: str) -> None:
        """Removes the top-level metadata of the group at ``uri`` (it is written last)."""
        for doc in GROUP_DOCUMENTS:
            files.remove(files.join(uri, doc), self.storage)

    def publish(self) -> None:
        """Makes the finished work location the final image (local: rename; S3: nothing left to
        do, the top-level metadata was the last write)."""
        if self.remote or self.work == self.final:
            return
        final, work = Path(strip_file_scheme(self.final)), Path(strip_file_scheme(self.work))
        old: Path | None = None
        if final.exists() or final.is_symlink():
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:12]}")
            os.rename(final, old)
        os.rename(work, final)
        if old is not None:
            if old.is_symlink() or not old.is_dir():
                old.unlink()
            else:
                shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Removes what an unfinished conversion wrote (never a finished image it did not write)."""
        try:
            if self.remote:
                self.drop_group_documents(self.work)
            files.remove(self.work, self.storage)
        except (OSError, StoreError):  # best effort: the leftover never looks complete anyway
            pass


def output_target(
    out_dir: str | os.PathLike[str],
    name: str,
    storage: StorageOptions | None = None,
    output: str | os.PathLike[str] | None = None,
) -> OutputTarget:
    """The target of image ``name`` in folder / prefix ``out_dir`` (``OUT/<name>.ome.zarr``), or
    at the exact ``output`` the caller named.

    Raises:
        UnsafeOutputNameError: ``name`` is not one safe path component, or the resolved output
            lies outside ``out_dir``.
    """
    storage = storage or StorageOptions()
    root = os.fspath(out_dir)
    if output is not None:
        final = os.fspath(output)  # named by the caller: used as given
    else:
        safe_output_name(name, root)
        final = files.join(root, f"{name}.ome.zarr") if is_remote(root) else str(Path(root) / f"{name}.ome.zarr")
    if is_remote(final):
        return OutputTarget(final, final, storage)
    path = Path(strip_file_scheme(final))
    if output is None:
        parent = Path(strip_file_scheme(root)).resolve()
        if path.parent.resolve() != parent:
            raise UnsafeOutputNameError(root, f"output {path} is not directly inside {parent}")
    work = path.with_name(f".{path.name}{PARTIAL_TAG}{uuid.uuid4().hex[:12]}")
    return OutputTarget(str(path), str(work), storage)
