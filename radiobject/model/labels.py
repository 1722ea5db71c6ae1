"""Label collections: a label map (value -> name, colour) stored with the collection, per-volume
class voxel counts (the ``obs`` column ``class_counts``) and class weights.

The label map lives in the collection's ``collection_meta.json`` (beside ``collection.json``),
with other collection-level facts such as ``channel_names``; ``set_label_map`` /
``get_label_map`` read and write it. ``record_class_counts`` reads every label volume once and
commits its counts as a JSON column ``class_counts`` (``{"0": 91234, "1": 532}``) of ``obs``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radiobject.errors import RadiObjectError
from radiobject.model.collection import VolumeCollection
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

#: Collection-level facts (label map, channel names), next to ``collection.json``.
META_FILE = "collection_meta.json"
#: ``obs`` column holding each label volume's voxel count per value, as JSON text.
COUNTS_COLUMN = "class_counts"
#: Fixed colours (RGB 0-255) of label values 1, 2, 3, ... (value 0 is background, not drawn);
#: the same value has the same colour in every panel, subject and tool.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (128, 128, 128),
)
_LABEL_DTYPES = frozenset({"uint8", "int8", "uint16", "int16", "uint32", "int32", "bool"})
#: Collection names taken for label collections (whole words, case-insensitive).
LABEL_NAME = re.compile(r"(^|[^a-z])(seg|segs|segmentation|label|labels|labelmap|mask|masks|annotation|gt|"
                        r"aseg|dseg|lesion|lesions|roi|rois)([^a-z]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class LabelMap:
    """Label value -> name (and optional RGB colour) of a label collection.

    Build one from ``{1: "tumour"}``, from nnU-Net's ``{"tumour": 1}`` (``LabelMap.parse``), or
    from ``"1=tumour,2=edema"`` (the CLI form). Values are ints; names are unique text.
    """

    names: Mapping[int, str]
    colors: Mapping[int, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = {int(k): str(v) for k, v in self.names.items()}
        if len(set(names.values())) != len(names):
            raise ValueError(f"label map: duplicate names in {names}")
        colors = {int(k): tuple(int(c) for c in v) for k, v in self.colors.items()}
        for k, c in colors.items():
            if len(c) != 3 or not all(0 <= x <= 255 for x in c):
                raise ValueError(f"label map: colour of {k} must be 3 integers 0-255, got {c}")
        object.__setattr__(self, "names", dict(sorted(names.items())))
        object.__setattr__(self, "colors", colors)

    @classmethod
    def parse(cls, spec: LabelMap | Mapping[Any, Any] | str) -> LabelMap:
        """From a ``LabelMap``, ``{value: name}``, ``{name: value}`` (nnU-Net), or ``"1=a,2=b"``.

        nnU-Net region labels (``{"whole tumour": [1, 2, 3]}``) have no single value and are
        left out of the map.
        """
        if isinstance(spec, LabelMap):
            return spec
        if isinstance(spec, str):
            pairs = [p.partition("=") for p in spec.split(",") if p.strip()]
            bad = [p[0] for p in pairs if not p[1]]
            if bad:
                raise ValueError(f"label map: expected VALUE=NAME pairs, got {spec!r}")
            return cls({int(v.strip()): n.strip() for v, _, n in pairs})
        out: dict[int, str] = {}
        for k, v in spec.items():
            if _is_int(k):
                out[int(k)] = str(v)
            elif _is_int(v):
                out[int(v)] = str(k)
            elif not isinstance(v, (list, tuple)):
                raise ValueError(f"label map: neither {k!r} nor {v!r} is an integer label value")
        return cls(out)

    def color(self, value: int) -> tuple[int, int, int]:
        """The colour of ``value``: its own, else ``PALETTE[(value - 1) % len(PALETTE)]``."""
        if value in self.colors:
            return self.colors[value]
        return PALETTE[(int(value) - 1) % len(PALETTE)]

    def name(self, value: int) -> str:
        """The name of ``value`` (``"label <value>"`` when the map has none)."""
        return self.names.get(int(value), f"label {int(value)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"names": {"1": "tumour"}, "colors": {"1": [230, 25, 75]}}``."""
        return {"names": {str(k): v for k, v in self.names.items()},
                "colors": {str(k): list(v) for k, v in self.colors.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelMap:
        """Inverse of ``to_dict``."""
        return cls({int(k): v for k, v in data.get("names", {}).items()},
                   {int(k): tuple(v) for k, v in data.get("colors", {}).items()})


def _is_int(v: object) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    return isinstance(v, str) and v.strip().lstrip("-").isdigit()


# ------------------------------------------------------------------ collection metadata
def read_collection_meta(coll: VolumeCollection) -> dict[str, Any]:
    """The collection-level facts (``labels``, ``channel_names``, ...); ``{}`` when none."""
    try:
        return dict(files.read_json(files.join(coll.uri, META_FILE), coll.location.storage))
    except FileNotFoundError:
        return {}


def update_collection_meta(coll: VolumeCollection, **values: Any) -> dict[str, Any]:
    """Sets keys of the collection-level facts (a value ``None`` removes its key); atomic write."""
    meta = read_collection_meta(coll)
    for k, v in values.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    files.write_json_atomic(files.join(coll.uri, META_FILE), json.loads(json.dumps(meta)), coll.location.storage)
    return meta


def set_label_map(coll: VolumeCollection, labels: LabelMap | Mapping[Any, Any] | str) -> LabelMap:
    """Stores the label map of a label collection (replacing any previous one)."""
    lm = LabelMap.parse(labels)
    update_collection_meta(coll, labels=lm.to_dict())
    return lm


def get_label_map(coll: VolumeCollection) -> LabelMap | None:
    """The stored label map; else the one the volumes carry (DICOM SEG segment labels / RTSTRUCT
    ROI names, metadata ``labels`` ``{name: value}``) when all volumes agree; else ``None``."""
    data = read_collection_meta(coll).get("labels")
    return LabelMap.from_dict(data) if data else label_map_from_volumes(coll)


def label_map_from_volumes(coll: VolumeCollection) -> LabelMap | None:
    """The label map in the volumes' metadata (``labels``: ``{name: value}``, as the DICOM SEG and
    RTSTRUCT readers record it), read from the catalog only; ``None`` when no volume has one or
    two volumes give one value different names."""
    obs = coll.obs
    if "metadata" not in obs.columns:
        return None
    names: dict[int, str] = {}
    for text in obs["metadata"].dropna():
        table = json.loads(text).get("labels") if text else None
        if not isinstance(table, dict):
            continue
        try:
            lm = LabelMap.parse(table)
        except ValueError:
            return None
        for v, n in lm.names.items():
            if names.setdefault(v, n) != n:
                return None
    if not names:
        return None
    try:
        return LabelMap(names)
    except ValueError:  # one name for two values across volumes
        return None


def is_label_collection(coll: VolumeCollection) -> bool:
    """True when the collection has a label map, or holds only integer volumes and either has
    ``class_counts`` or a label-like name (``seg``, ``label``, ``mask``, ``dseg``, ...). An int16
    CT collection named ``CT`` is an image."""
    if get_label_map(coll) is not None:
        return True
    obs = coll.obs
    if not len(obs) or not all(str(d) in _LABEL_DTYPES for d in obs["dtype"]):
        return False
    return COUNTS_COLUMN in obs.columns or bool(LABEL_NAME.search(coll.name))


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
    rows = [r for r in obs.to_dict("records")
            if recount or not (isinstance(r.get(COUNTS_COLUMN), str) and r.get(COUNTS_COLUMN))]
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
    total: dict[int, float] = ({int(c): float(counts[c].sum()) for c in counts.columns}
                               if isinstance(counts, pd.DataFrame) else {int(k): float(v) for k, v in counts.items()})
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
