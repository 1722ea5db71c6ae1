"""Which collections and subjects a loader reads: roles, splits and completeness.

* **Roles.** A loader has *image* collections (``modalities``, stacked as input channels) and at most
  one *label* collection (``label``, delivered as ``batch["label"]``). A label never becomes an input
  channel unless the caller names it in ``modalities``. With ``modalities=None`` the images are every
  collection that is not a label: not ``label``, not a collection whose name says it is one (``seg``,
  ``label(s)``, ``mask(s)``, ``segmentation``, ``annotation``, ``gt``, ...), and not a collection that
  carries a label map (``label_map`` attribute).
* **Splits.** ``split="train"`` keeps the subjects whose ``obs_meta`` column ``split`` equals
  ``"train"``; ``fold=k`` (with ``split="train"`` or ``"val"``) reads the column ``fold_<k>`` (values
  ``train`` / ``val``), or a column ``fold`` holding each subject's fold number: ``split="val"`` keeps
  fold ``k``, ``split="train"`` the others. These are the columns ``radiobject split`` writes.
* **Completeness.** A subject lacking a volume in one of the loader's collections is incomplete;
  ``incomplete="error"`` (default) raises :class:`IncompleteSubjectsError` listing them,
  ``"skip"`` leaves them out and warns with :class:`IncompleteSubjectsWarning` saying how many.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from radiobject.errors import NotFoundError, RadiObjectError
from radiobject.model.label_maps import LABEL_NAME

__all__ = [
    "IncompleteSubjectsError",
    "IncompleteSubjectsWarning",
    "SplitError",
    "complete_subjects",
    "default_modalities",
    "is_label_collection",
    "split_subjects",
]

#: Collection names taken for label collections: the one rule, in ``radiobject.model.label_maps``.
LABEL_NAMES = LABEL_NAME


class IncompleteSubjectsError(RadiObjectError, ValueError):
    """Subjects lack a volume in one of the loader's collections (``incomplete="error"``)."""

    def __init__(self, store: str, missing: dict[str, list[str]]) -> None:
        self.store, self.missing = store, missing
        listed = "; ".join(f"{sid!r} lacks {cols}" for sid, cols in list(missing.items())[:20])
        more = f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""
        super().__init__(
            f"{len(missing)} incomplete subject(s) in {store}: {listed}{more}; pass "
            "incomplete='skip' to leave them out, or subjects=[...]"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.store, self.missing))


class IncompleteSubjectsWarning(UserWarning):
    """Incomplete subjects were left out (``incomplete="skip"``)."""


class SplitError(RadiObjectError, ValueError):
    """A ``split=`` / ``fold=`` selection cannot be read from ``obs_meta``."""

    def __init__(self, store: str, reason: str) -> None:
        self.store, self.reason = store, reason
        super().__init__(f"{store}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.store, self.reason))


def is_label_collection(radi: Any, name: str) -> bool:
    """True when collection ``name`` is a label collection (by its name or a stored label map)."""
    if LABEL_NAMES.search(name):
        return True
    try:
        return bool(getattr(radi[name], "label_map", None))
    except Exception:  # noqa: BLE001 - a collection without that attribute is an image
        return False


def default_modalities(radi: Any, label: str | None) -> list[str]:
    """Image collections when ``modalities`` is not given: every collection that is not a label."""
    names = list(radi.collection_names)
    images = [c for c in names if c != label and not is_label_collection(radi, c)]
    if not images:
        raise NotFoundError(
            "image collection",
            "(any)",
            f"{radi.uri}: collections {names} are all labels; name the input collections with modalities=[...]",
        )
    return images


def _norm(value: Any) -> str:
    text = str(value).strip().lower()
    return {"validation": "val", "valid": "val", "training": "train", "testing": "test"}.get(text, text)


def split_subjects(radi: Any, split: str | None, fold: int | None) -> list[str] | None:
    """Subject IDs selected by ``split`` / ``fold`` from ``obs_meta`` (``None``: no selection)."""
    if split is None and fold is None:
        return None
    meta = radi.obs_meta.read() if hasattr(radi.obs_meta, "read") else radi.obs_meta
    meta = meta.reset_index() if "obs_subject_id" not in meta.columns else meta
    if "obs_subject_id" not in meta.columns:
        raise SplitError(radi.uri, "obs_meta has no obs_subject_id column")
    ids = [str(v) for v in meta["obs_subject_id"]]
    want = _norm(split) if split is not None else None
    if fold is None:
        if "split" not in meta.columns:
            raise SplitError(
                radi.uri,
                f"split={split!r} needs an obs_meta column 'split' (see `radiobject split`); "
                f"columns: {list(meta.columns)}",
            )
        return [sid for sid, v in zip(ids, meta["split"], strict=True) if _norm(v) == want]
    if want not in ("train", "val"):
        raise SplitError(radi.uri, f"fold={fold} needs split='train' or 'val', got {split!r}")
    col = f"fold_{int(fold)}"
    if col in meta.columns:
        return [sid for sid, v in zip(ids, meta[col], strict=True) if _norm(v) == want]
    if "fold" in meta.columns:
        folds = [None if v is None or str(v) in ("", "nan", "<NA>") else int(float(v)) for v in meta["fold"]]
        if int(fold) not in folds:
            present = sorted(f for f in set(folds) if f is not None)
            raise SplitError(radi.uri, f"fold {fold} not in obs_meta column 'fold' (folds {present})")
        keep = (lambda f: f == int(fold)) if want == "val" else (lambda f: f is not None and f != int(fold))
        return [sid for sid, f in zip(ids, folds, strict=True) if keep(f)]
    raise SplitError(
        radi.uri,
        f"fold={fold} needs an obs_meta column {col!r} or 'fold' (see `radiobject split`); "
        f"columns: {list(meta.columns)}",
    )


def complete_subjects(
    radi: Any, collections: Sequence[str], subjects: Sequence[str] | None, incomplete: str = "error"
) -> list[str]:
    """``subjects`` (default: all) that have a volume in every one of ``collections``, by policy."""
    if incomplete not in ("error", "skip"):
        raise ValueError(f"incomplete must be 'error' or 'skip', got {incomplete!r}")
    wanted = [str(s) for s in (subjects if subjects is not None else radi.obs_subject_ids)]
    have = {name: set(map(str, radi[name].obs_subject_ids)) for name in collections}
    if subjects is not None:
        known = set(map(str, radi.obs_subject_ids)).union(*have.values())
        unknown = [sid for sid in wanted if sid not in known]
        if unknown:
            raise NotFoundError("subject", unknown[0] if len(unknown) == 1 else unknown, radi.uri)
    missing = {sid: [n for n in collections if sid not in have[n]] for sid in wanted}
    missing = {sid: cols for sid, cols in missing.items() if cols}
    if missing and incomplete == "error":
        raise IncompleteSubjectsError(radi.uri, missing)
    if missing:
        warnings.warn(
            f"{radi.uri}: left out {len(missing)} of {len(wanted)} subject(s) lacking a volume in one of "
            f"{list(collections)}: {sorted(missing)[:10]}",
            IncompleteSubjectsWarning,
            stacklevel=3,
        )
    return [sid for sid in wanted if sid not in missing]
