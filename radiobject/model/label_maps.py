"""Label maps: value -> name (and colour) stored with a label collection, and which collections
are label collections. Knows collections only by duck type (``uri``, ``location``, volumes), so
``VolumeCollection.label_map`` can use it; counts and weights are in :mod:`radiobject.model.labels`.

The label map lives in the collection's ``collection_meta.json`` (beside ``collection.json``),
with other collection-level facts such as ``channel_names``; ``set_label_map`` /
``get_label_map`` read and write it. ``record_class_counts`` reads every label volume once and
commits its counts as a JSON column ``class_counts`` (``{"0": 91234, "1": 532}``) of ``obs``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from radiobject.storage import files

if TYPE_CHECKING:
    from radiobject.model.collection import VolumeCollection

__all__ = [
    "COUNTS_COLUMN",
    "LABEL_NAME",
    "META_FILE",
    "PALETTE",
    "LabelMap",
    "get_label_map",
    "is_label_collection",
    "label_map_from_volumes",
    "read_collection_meta",
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
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
)
_LABEL_DTYPES = frozenset({"uint8", "int8", "uint16", "int16", "uint32", "int32", "bool"})
#: Collection names taken for label collections (whole words, case-insensitive).
LABEL_NAME = re.compile(
    r"(^|[^a-z])(seg|segs|segmentation|segmentations|label|labels|labelmap|mask|masks|annotation|annotations|"
    r"gt|groundtruth|ground_truth|truth|manual|roi|rois|lesion|lesions|aseg|dseg|probseg)([^a-z]|$)",
    re.IGNORECASE,
)


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
            parsed: dict[int, str] = {}
            for v, _, n in pairs:
                if not _is_int(v.strip()):
                    raise ValueError(f"label map: value {v.strip()!r} in {spec!r} is not an integer")
                if not n.strip():
                    raise ValueError(f"label map: value {v.strip()} in {spec!r} has no name")
                if int(v) in parsed:
                    raise ValueError(f"label map: value {int(v)} is named twice in {spec!r}")
                parsed[int(v)] = n.strip()
            return cls(parsed)
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
        return {
            "names": {str(k): v for k, v in self.names.items()},
            "colors": {str(k): list(v) for k, v in self.colors.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelMap:
        """Inverse of ``to_dict``."""
        return cls(
            {int(k): v for k, v in data.get("names", {}).items()},
            {int(k): tuple(v) for k, v in data.get("colors", {}).items()},
        )


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


def _label_intent(metadata: Any) -> bool:
    """True when a volume's stored metadata (JSON text or dict) has the NIfTI intent ``label``."""
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return False
    return isinstance(metadata, Mapping) and metadata.get("intent") == "label"


def is_label_collection(coll: VolumeCollection) -> bool:
    """True when the collection has a label map, or holds only integer volumes and either has
    ``class_counts``, a label-like name (``seg``, ``label``, ``mask``, ``dseg``, ...) or the NIfTI
    intent ``label`` on every volume (an arg-max prediction). An int16 CT collection named ``CT``
    is an image."""
    if get_label_map(coll) is not None:
        return True
    obs = coll.obs
    if not len(obs) or not all(str(d) in _LABEL_DTYPES for d in obs["dtype"]):
        return False
    if COUNTS_COLUMN in obs.columns or bool(LABEL_NAME.search(coll.name)):
        return True
    return "metadata" in obs.columns and all(_label_intent(m) for m in obs["metadata"])
