"""Series discovery: find DICOM files in a tree, group them into series, record what is skipped.

Files are recognised by content, not by name: with or without extension, with or without the
128-byte preamble, and gzip-compressed (``.gz`` or any name starting with the gzip magic bytes).
DICOMDIR files are ignored (the tree walk finds the same files). Files are grouped by
SeriesInstanceUID, then a UID is split where it mixes image orientations, matrix sizes, echo
numbers or complex components (magnitude / phase / real / imaginary), as dcm2niix does.
Localizers / scouts, screen captures without patient geometry and non-image objects (RTSTRUCT,
SEG, SR, presentation states) become series with a ``skipped_reason``; non-DICOM files are listed in
``Discovery.skipped_files`` with the reason.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from radiobject.formats.dicom.errors import DicomError, NotDicomError, UnreadableInputError
from radiobject.formats.dicom.inputs import gunzip_bounded, read_prefix, walk_files

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_DEFER = 64 * 1024  # pixel data (and other elements) larger than this are read on demand


def read_header(path: str | os.PathLike[str], *, defer: bool = True) -> Dataset:
    """Read one DICOM file (plain or gzip-compressed); large elements are read lazily.

    The path is ``stat``-ed before it is opened (only regular files are read) and reads are
    bounded by the memory budget (see :mod:`.inputs`).

    Raises:
        NotDicomError: the file is not DICOM (or is a DICOMDIR, or not a regular file).
        UnreadableInputError: the file cannot be stat-ed, opened or read.
        InputTooLargeError: the file, or its gzip stream, exceeds the memory budget.
    """
    path = str(path)
    magic = read_prefix(path, 2)
    src: Any = path
    if magic == b"\x1f\x8b":
        src = io.BytesIO(gunzip_bounded(path))
    kwargs: dict[str, Any] = {"defer_size": _DEFER} if defer and isinstance(src, str) else {}
    try:
        try:
            ds = pydicom.dcmread(src, **kwargs)
        except InvalidDicomError:
            if not isinstance(src, str):
                src.seek(0)
            ds = pydicom.dcmread(src, force=True, **kwargs)
            if "SOPClassUID" not in ds and not ("Rows" in ds and "PixelData" in ds):
                raise NotDicomError(path, "not a DICOM file (no DICM prefix, no SOP class / pixel data)") from None
    except NotDicomError:
        raise
    except PermissionError as exc:
        raise UnreadableInputError(path, f"cannot read ({exc.strerror or exc})") from exc
    except Exception as exc:
        raise NotDicomError(path, f"not a readable DICOM file: {type(exc).__name__}: {exc}") from exc
    sop = str(ds.get("SOPClassUID", "")) or str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", ""))
    if sop == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        raise NotDicomError(path, "DICOMDIR (ignored: the tree walk finds the files it lists)")
    ds.radiobject_path = path
    return ds


def list_files(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> tuple[list[str], list[tuple[str, str]]]:
    """Files to read and ``(path, reason)`` of entries skipped unopened (FIFOs, devices, ...).

    A folder is walked recursively (see :func:`.inputs.walk_files`); a file or a list of files is
    taken as given (each is still ``stat``-ed before it is opened).

    Raises:
        DicomError: ``source`` does not exist.
        UnreadableInputError: a folder of the tree cannot be listed.
    """
    if isinstance(source, (str, os.PathLike)):
        p = str(source)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise DicomError(p, "no such file or folder") from None
        except OSError as exc:
            raise UnreadableInputError(p, f"cannot stat ({exc.strerror or exc})") from exc
        if stat.S_ISDIR(st.st_mode):
            return walk_files(p)
        return [p], []
    return [str(s) for s in source], []


def iter_files(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[str]:
    """All regular files under a folder (recursive, sorted), or the given file list."""
    return list_files(source)[0]


@dataclass
class SeriesInfo:
    """One series (after splitting) as found on disk.

    Attributes:
        series_uid: SeriesInstanceUID.
        key: unique key: the UID, plus ``#<part>`` when the UID was split.
        datasets: the headers (pixel data deferred), one per file, in file-name order.
        split: why the UID was split ('' when not), e.g. ``'orientation 2/2'``.
        skipped_reason: set when the series is not converted (localizer, non-image object, ...).
        duplicates: paths of files dropped because their SOPInstanceUID was already seen
            (the same image stored twice, e.g. in two transfer syntaxes).
    """

    series_uid: str
    key: str
    datasets: list[Dataset] = field(default_factory=list)
    split: str = ""
    skipped_reason: str | None = None
    duplicates: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        """File paths of the series."""
        return [ds.radiobject_path for ds in self.datasets]

    @property
    def first(self) -> Dataset:
        """The first data set (for series-level attributes)."""
        return self.datasets[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no patient-identifying fields)."""
        ds = self.first
        return {
            "series_uid": self.series_uid,
            "key": self.key,
            "study_uid": str(ds.get("StudyInstanceUID", "")),
            "series_number": _int_or_none(ds.get("SeriesNumber")),
            "series_description": str(ds.get("SeriesDescription", "")),
            "modality": str(ds.get("Modality", "")),
            "n_files": len(self.datasets),
            "folder": os.path.dirname(self.paths[0]),
            "split": self.split,
            "skipped_reason": self.skipped_reason,
            "n_duplicates": len(self.duplicates),
        }


@dataclass
class Discovery:
    """Result of :func:`discover_series`: series and the files that were not DICOM images."""

    series: list[SeriesInfo]
    skipped_files: list[tuple[str, str]]


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def image_type(ds: Dataset) -> list[str]:
    """ImageType values, upper-case ([] when absent)."""
    v = ds.get("ImageType", [])
    return [str(x).upper() for x in (v if isinstance(v, (list, pydicom.multival.MultiValue)) else [v])]


def _orientation(ds: Dataset) -> tuple[float, ...] | None:
    iop = ds.get("ImageOrientationPatient")
    if iop is None and "SharedFunctionalGroupsSequence" in ds:
        try:
            iop = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
        except (AttributeError, IndexError):
            iop = None
    if iop is None or len(iop) != 6:
        return None
    return tuple(float(x) for x in iop)


def skip_reason(ds: Dataset) -> str | None:
    """Why a file's series should not be converted to a volume (None: convert it)."""
    sop = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", ""))
    if sop == SEG_SOP_CLASS:
        return "DICOM-SEG label object (read it with read_dicom_seg)"
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return f"non-image object (Modality {modality or '?'}, SOP class {sop or '?'})"
    itype = image_type(ds)
    if "LOCALIZER" in itype or "SCOUT" in itype:
        return "localizer / scout image (ImageType " + "\\".join(itype) + ")"
    if sop.startswith(SECONDARY_CAPTURE_PREFIX) and _orientation(ds) is None:
        return "secondary capture without patient geometry (screen capture / derived report image)"
    return None


def _complex_component(ds: Dataset) -> str:
    itype = image_type(ds)
    for token, name in (
        ("P", "phase"),
        ("PHASE", "phase"),
        ("R", "real"),
        ("REAL", "real"),
        ("I", "imaginary"),
        ("IMAGINARY", "imaginary"),
    ):
        if token in itype[2:]:
            return name
    return ""


def _split_key(ds: Dataset) -> tuple[Any, ...]:
    iop = _orientation(ds)
    iop_key = tuple(np.round(np.asarray(iop), 3).tolist()) if iop is not None else None
    echo = _int_or_none(ds.get("EchoNumbers"))
    return (
        iop_key,
        int(ds.get("Rows", 0)),
        int(ds.get("Columns", 0)),
        echo,
        _complex_component(ds),
    )


def _describe_split(keys: list[tuple[Any, ...]], key: tuple[Any, ...]) -> str:
    parts = [key[5]] if len(key) > 5 else []
    names = ("orientation", "matrix", "matrix", "echo", "component")
    for i, name in enumerate(names):
        if len({k[i] for k in keys}) > 1:
            parts.append(f"{name} {key[i]}" if name in ("echo", "component") else name)
    return ", ".join(dict.fromkeys(parts)) + f" ({keys.index(key) + 1}/{len(keys)})"


def _acquisition_groups(members: list[Dataset]) -> list[list[Dataset]] | None:
    """Split classic single-frame images by AcquisitionNumber when the UID mixes acquisitions.

    Only done when the images do not form a regular grid (unequal image counts per slice
    position) but each acquisition on its own does; a regular 4D series (fMRI, where every volume
    has its own AcquisitionNumber) is left alone.
    """
    acqs = {_int_or_none(d.get("AcquisitionNumber")) for d in members}
    if len(acqs) < 2 or any("ImagePositionPatient" not in d for d in members):
        return None
    iop = _orientation(members[0])
    if iop is None:
        return None
    normal = np.cross(np.asarray(iop[:3]), np.asarray(iop[3:]))

    def regular(ds_list: list[Dataset]) -> bool:
        pos = [round(float(np.dot(normal, [float(x) for x in d.ImagePositionPatient])), 2) for d in ds_list]
        counts = {p: pos.count(p) for p in pos}
        return len(set(counts.values())) == 1

    if regular(members):
        return None
    groups: dict[int | None, list[Dataset]] = {}
    for d in members:
        groups.setdefault(_int_or_none(d.get("AcquisitionNumber")), []).append(d)
    parts = [groups[k] for k in sorted(groups, key=lambda a: (a is None, a or 0))]
    return parts if all(regular(g) for g in parts) else None


def group_series(datasets: Iterable[Dataset]) -> list[SeriesInfo]:
    """Group headers by SeriesInstanceUID and split mixed UIDs (orientation, size, echo, component)."""
    by_uid: dict[str, list[Dataset]] = {}
    for ds in datasets:
        uid = str(ds.get("SeriesInstanceUID", "")) or f"no-uid:{os.path.dirname(ds.radiobject_path)}"
        by_uid.setdefault(uid, []).append(ds)
    out: list[SeriesInfo] = []
    for uid, all_members in by_uid.items():
        seen: set[str] = set()
        members: list[Dataset] = []
        dups: list[Dataset] = []
        for d in all_members:
            sop = str(d.get("SOPInstanceUID", "")) or d.radiobject_path
            (dups if sop in seen else members).append(d)
            seen.add(sop)
        reasons = [skip_reason(d) for d in members]
        kept = [d for d, r in zip(members, reasons, strict=True) if r is None]
        skipped = [(d, r) for d, r in zip(members, reasons, strict=True) if r is not None]
        if skipped:
            by_reason: dict[str, list[Dataset]] = {}
            for d, r in skipped:
                by_reason.setdefault(r, []).append(d)
            for r, ds_list in by_reason.items():
                suffix = "" if not kept and len(by_reason) == 1 else f"#skipped{len(out)}"
                out.append(SeriesInfo(uid, uid + suffix, ds_list, skipped_reason=r))
        if not kept:
            continue
        groups: dict[tuple[Any, ...], list[Dataset]] = {}
        for d in kept:
            groups.setdefault(_split_key(d), []).append(d)
        for k in list(groups):  # mixed acquisitions within one orientation / echo / component
            parts = _acquisition_groups(groups[k])
            if parts:
                del groups[k]
                for part in parts:
                    groups[k + (f"acquisition {_int_or_none(part[0].get('AcquisitionNumber'))}",)] = part
        keys = list(groups)
        for i, k in enumerate(keys):
            split = _describe_split(keys, k) if len(keys) > 1 else ""
            info = SeriesInfo(uid, uid if len(keys) == 1 else f"{uid}#{i + 1}", groups[k], split)
            info.duplicates = [d.radiobject_path for d in dups] if i == 0 else []
            out.append(info)
    out.sort(
        key=lambda s: (
            str(s.first.get("StudyInstanceUID", "")),
            _int_or_none(s.first.get("SeriesNumber")) or 0,
            s.key,
        )
    )
    return out


def discover_series(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> Discovery:
    """Find every DICOM series under a folder (recursively) or in a list of files.

    Args:
        source: a folder, one file, or a list of files.

    Returns:
        :class:`Discovery` with the series (skipped ones carry ``skipped_reason``) and the
        ``(path, reason)`` of every file that is not DICOM (or is a DICOMDIR, a FIFO, a device...).

    Raises:
        UnreadableInputError: a folder or file of the tree cannot be listed / read.
        InputTooLargeError: a file or gzip stream exceeds the memory budget.
    """
    headers: list[Dataset] = []
    paths, skipped = list_files(source)
    for path in paths:
        try:
            headers.append(read_header(path))
        except NotDicomError as exc:  # unreadable / too large files propagate: never a shorter series
            skipped.append((path, exc.reason))
    return Discovery(group_series(headers), skipped)


__all__ = [
    "Discovery",
    "SeriesInfo",
    "discover_series",
    "group_series",
    "iter_files",
    "list_files",
    "read_header",
    "skip_reason",
]
