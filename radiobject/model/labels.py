"""Label collections: per-volume class voxel counts (the ``obs`` column ``class_counts``) and
class weights; the label map itself (value -> name, colour) is :mod:`radiobject.model.label_maps`.

``record_class_counts`` reads every label volume once and commits its counts as a JSON column
``class_counts`` (``{"0": 91234, "1": 532}``) of ``obs``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radiobject.errors import RadiObjectError
from radiobject.model.collection import VolumeCollection
from radiobject.model.label_maps import (
    COUNTS_COLUMN,
    LABEL_NAME,
    META_FILE,
    PALETTE,
    LabelMap,
    get_label_map,
    is_label_collection,
    label_map_from_volumes,
    read_collection_meta,
    set_label_map,
    update_collection_meta,
)
from radiobject.model.volume import Volume
from radiobject.storage import files
from radiobject.storage.tables import FragmentTable

__all__ = [
    "COUNTS_COLUMN",
    "LABEL_NAME",
    "META_FILE",
    "PALETTE",
    "LabelMap",
    "class_counts",
    "class_counts_table",
    "class_weights",
    "get_label_map",
    "is_label_collection",
    "label_map_from_volumes",
    "label_values",
    "read_collection_meta",
    "record_class_counts",
    "record_label_counts",
    "set_label_map",
    "update_collection_meta",
]


def record_label_counts(radi: Any, names: Sequence[str] | None = None, *, progress: bool = False) -> list[str]:
    """``record_class_counts`` for every label collection among ``names`` (default: all) of a
    store, counting only volumes not counted yet; returns the collections counted."""
    done = []
    for name in names if names is not None else radi.collection_names:
        coll = VolumeCollection(files.join(radi.uri, "collections", name), storage=radi.location.storage)
        if is_label_collection(coll):
            record_class_counts(coll, progress=progress)
            done.append(name)
    return done


# ------------------------------------------------------------------ counts and weights
def class_counts(volume: Volume) -> dict[int, int]:
    """Voxel count per label value of one volume (reads it whole; values must be integers)."""
    data = volume.to_numpy()
    if data.dtype.kind not in "biu":
        raise RadiObjectError(f"{volume.uri}: class counts need an integer label volume, not {data.dtype}")
    values, counts = np.unique(data, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def record_class_counts(coll: VolumeCollection, *, progress: bool = False, recount: bool = False) -> pd.DataFrame:
    """Computes the class counts of every volume not counted yet (all with ``recount``) and
    commits them as the ``class_counts`` obs column (one new ``obs`` fragment). Returns
    :func:`class_counts_table` of the collection."""
    base = VolumeCollection(coll.uri, storage=coll.location.storage)
    obs = base.obs
    rows = [
        r
        for r in obs.to_dict("records")
        if recount or not (isinstance(r.get(COUNTS_COLUMN), str) and r.get(COUNTS_COLUMN))
    ]
    for r in tqdm(rows, desc=f"{base.name}: class counts", disable=not progress, leave=False):
        r[COUNTS_COLUMN] = json.dumps({str(k): v for k, v in class_counts(base.volume(r["obs_id"])).items()})
    if rows:
        FragmentTable(files.join(base.uri, "obs"), "obs_id", base.location.storage).append(pd.DataFrame(rows))
        base.compact()
        coll.compact()  # drops this object's cached catalog (shared by its views)
    return class_counts_table(coll)


def class_counts_table(coll: VolumeCollection) -> pd.DataFrame:
    """One row per volume (index ``obs_id``), one column per label value, voxel counts (0 when
    absent). Uses the ``class_counts`` column; volumes without it are counted now (not stored)."""
    obs = coll.obs
    per: dict[str, dict[int, int]] = {}
    for r in obs.to_dict("records"):
        text = r.get(COUNTS_COLUMN)
        if isinstance(text, str) and text:
            per[r["obs_id"]] = {int(k): int(v) for k, v in json.loads(text).items()}
        else:
            per[r["obs_id"]] = class_counts(coll.volume(r["obs_id"]))
    df = pd.DataFrame.from_dict(per, orient="index").fillna(0).astype("int64")
    df = df.reindex(sorted(df.columns), axis=1)
    df.index.name = "obs_id"
    return df


def class_weights(
    counts: VolumeCollection | pd.DataFrame | Mapping[int, int],
    *,
    method: str = "inverse",
    include_background: bool = True,
    values: Sequence[int] | None = None,
) -> dict[int, float]:
    """Class weights for a weighted loss, ``{value: weight}`` normalised to mean 1.

    Args:
        counts: a label collection, a :func:`class_counts_table`, or ``{value: voxels}``.
        method: ``inverse`` (1 / frequency), ``median`` (median frequency / frequency, as in
            SegNet), ``sqrt`` (1 / sqrt(frequency)) or ``effective`` (1 - b) / (1 - b^n) with
            b = 0.9999 (Cui et al. 2019).
        include_background: weight value 0 too (else it is left out).
        values: the classes to weight (default: every value seen); a value never seen gets
            the largest weight of the seen ones.
    """
    if isinstance(counts, VolumeCollection):
        counts = class_counts_table(counts)
    total: dict[int, float] = (
        {int(c): float(counts[c].sum()) for c in counts.columns}
        if isinstance(counts, pd.DataFrame)
        else {int(k): float(v) for k, v in counts.items()}
    )
    keys = [int(v) for v in values] if values is not None else sorted(total)
    if not include_background:
        keys = [k for k in keys if k != 0]
    seen = {k: total[k] for k in keys if total.get(k, 0) > 0}
    if not seen:
        raise ValueError("class weights: no voxels in any of the classes")
    n = sum(seen.values())
    freq = {k: v / n for k, v in seen.items()}
    if method == "inverse":
        raw = {k: 1.0 / f for k, f in freq.items()}
    elif method == "median":
        med = float(np.median(list(freq.values())))
        raw = {k: med / f for k, f in freq.items()}
    elif method == "sqrt":
        raw = {k: 1.0 / np.sqrt(f) for k, f in freq.items()}
    elif method == "effective":
        beta = 0.9999
        raw = {k: (1 - beta) / (1 - beta ** seen[k]) for k in seen}
    else:
        raise ValueError(f"class weights: method must be inverse, median, sqrt or effective, not {method!r}")
    top = max(raw.values())
    full = {k: float(raw.get(k, top)) for k in keys}
    mean = float(np.mean(list(full.values())))
    return {k: w / mean for k, w in full.items()}


def label_values(coll: VolumeCollection) -> list[int]:
    """The label values present (from ``class_counts`` when recorded, else the label map)."""
    obs = coll.obs
    if COUNTS_COLUMN in obs.columns and obs[COUNTS_COLUMN].notna().any():
        vals: set[int] = set()
        for text in obs[COUNTS_COLUMN].dropna():
            vals.update(int(k) for k in json.loads(text))
        return sorted(vals)
    lm = get_label_map(coll)
    return sorted(lm.names) if lm else []
