"""Expanding user path specs (a glob, a folder, a list) and deriving subject IDs from paths."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from radiobject.errors import ImageReadError

PathSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
#: The files of one collection of a store: a ``PathSpec`` (subject IDs from the paths) or a
#: ``{subject ID: file}`` mapping.
CollectionSpec = PathSpec | Mapping[str, str | os.PathLike[str]]

_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".dcm", ".tif", ".tiff", ".svs")


def expand_paths(spec: PathSpec, suffixes: Iterable[str] = _IMAGE_SUFFIXES) -> list[str]:
    """A sorted list of files: a glob pattern, a folder (its image files), a file, or a list."""
    if isinstance(spec, (str, os.PathLike)):
        text = str(spec)
        if glob.has_magic(text):
            found = sorted(glob.glob(text, recursive=True))
        elif os.path.isdir(text):
            sfx = tuple(s.lower() for s in suffixes)
            found = sorted(str(p) for p in Path(text).iterdir() if str(p).lower().endswith(sfx))
        elif os.path.exists(text):
            found = [text]
        else:
            raise ImageReadError(text, "no such file, folder or glob match")
        if not found:
            raise ImageReadError(text, "matched no files")
        return found
    return [str(p) for p in spec]


#: BIDS entity keys that stay part of an ID when a wildcard follows them: ``sub-*`` -> ``sub-01``.
BIDS_ID_ENTITIES: tuple[str, ...] = ("sub", "ses")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:(.*)/)?"
            i += 3
        elif pattern[i] == "*":
            entity = next(
                (
                    e
                    for e in BIDS_ID_ENTITIES
                    if pattern[:i].endswith(e + "-") and (i == len(e) + 1 or not pattern[i - len(e) - 2].isalnum())
                ),
                None,
            )
            if entity is not None:  # the entity key is part of the ID (BIDS: sub-01, ses-pre)
                out = out[: -len(re.escape(entity + "-"))] + f"({re.escape(entity)}-[^/_]*)"
            else:
                out += "([^/]*)"
            i += 1
        elif pattern[i] == "?":
            out += "([^/])"
            i += 1
        elif pattern[i] == "[":
            j = pattern.index("]", i)
            out += "(" + pattern[i : j + 1] + ")"
            i = j + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "$")


def strip_image_suffix(name: str) -> str:
    """``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``."""
    low = name.lower()
    for s in sorted(_IMAGE_SUFFIXES, key=len, reverse=True):
        if low.endswith(s):
            return name[: -len(s)]
    return name


def subject_id_from_path(path: str, spec: PathSpec | None = None, subject_pattern: str | None = None) -> str:
    """The subject ID of ``path``.

    - ``subject_pattern``: a regex searched in the path; its first group (or ``subject`` group).
    - else, when ``spec`` is a glob: the text the wildcards matched (joined by ``_``, a repeated
      part once; a wildcard that matched only an image suffix is ignored). A wildcard right
      after a BIDS entity key ``sub-`` / ``ses-`` keeps the key and stops at ``_`` or ``/``:
      ``sub-*/anat/sub-*_T1w.nii.gz`` gives ``sub-01``, and
      ``sub-*/ses-*/anat/sub-*_ses-*_T1w.nii.gz`` gives ``sub-01_ses-pre`` (subject x session).
    - else the file name without its image suffix (for folders: the folder name).
    """
    if subject_pattern is not None:
        try:
            m = re.search(subject_pattern, path)
        except re.error as exc:
            raise ImageReadError(path, f"subject pattern {subject_pattern!r} is not a valid regex ({exc})") from None
        if not m:
            raise ImageReadError(path, f"subject pattern {subject_pattern!r} does not match the path")
        sid = m.group("subject") if "subject" in m.groupdict() else m.group(1 if m.groups() else 0)
        if not sid:  # an optional group that took no part in the match, or matched nothing
            raise ImageReadError(path, f"subject pattern {subject_pattern!r} matched an empty subject ID")
        return str(sid)
    if isinstance(spec, (str, os.PathLike)) and glob.has_magic(str(spec)):
        m = _glob_regex(str(spec)).match(path)
        if m:
            parts = [strip_image_suffix(g) for g in m.groups() if g]
            parts = list(dict.fromkeys(p for p in parts if p))  # sub-*/anat/sub-*_T1w -> one part
            if parts:
                return "_".join(parts)
    return strip_image_suffix(Path(path.rstrip("/")).name)


_BIDS_SAMPLE = re.compile(r"^(sub-[A-Za-z0-9]+)_(ses-[A-Za-z0-9]+)$")


def bids_sample_parts(sample_id: str) -> tuple[str, str] | None:
    """``sub-01_ses-pre`` -> ``("sub-01", "ses-pre")`` (a BIDS subject x session sample ID), else None."""
    m = _BIDS_SAMPLE.match(sample_id)
    return (m.group(1), m.group(2)) if m else None
