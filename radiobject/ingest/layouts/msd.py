"""Medical Segmentation Decathlon (MSD) and nnU-Net raw datasets, read through ``dataset.json``.

MSD (``TaskXX_Name/``): ``dataset.json`` lists ``training`` pairs ``{"image", "label"}``; a
multi-modal image is one 4D file. It becomes the collections ``image`` (4D kept; channel
names from ``modality``) and ``label`` (label map from ``labels``).

nnU-Net v2 (``DatasetXXX_Name/``): ``imagesTr/{case}_{XXXX}{file_ending}`` per channel and
``labelsTr/{case}{file_ending}``; ``dataset.json`` has ``channel_names``, ``labels``
(``{name: value}``; region labels ``{name: [values]}`` are kept as collection facts) and
``file_ending``. Each channel becomes a collection named by its channel name, plus ``label``.
``export_nnunet`` writes a store back in this layout.

The case ID (file name without channel and ending) is the subject ID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radiobject.errors import LayoutError
from radiobject.formats.nifti import write_nifti
from radiobject.ingest.layouts.plan import LayoutPlan, find_incomplete
from radiobject.ingest.manifest import CohortPlan
from radiobject.ingest.tasks import Problem, VolumeTask
from radiobject.model.labels import LabelMap, get_label_map

__all__ = ["LABEL_COLLECTION", "export_nnunet", "plan_msd", "plan_nnunet", "read_dataset_json"]

#: Name of the label collection a dataset.json layout is ingested into.
LABEL_COLLECTION = "label"
_COLLECTION_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def read_dataset_json(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``root/dataset.json`` as a dict (``LayoutError`` when absent or not JSON)."""
    path = Path(root) / "dataset.json"
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise LayoutError(str(path), "no dataset.json (not an MSD / nnU-Net dataset folder)") from None
    except ValueError as exc:
        raise LayoutError(str(path), f"not valid JSON ({exc})") from None


def _case_id(path: str, ending: str) -> str:
    name = Path(path).name
    return name[: -len(ending)] if name.endswith(ending) else name.split(".", 1)[0]


def _channel_names(ds: dict[str, Any], key: str, where: str) -> list[str]:
    raw = ds.get(key)
    if not isinstance(raw, dict) or not raw:
        raise LayoutError(where, f'dataset.json needs a non-empty {key!r} object ({{"0": "T2", ...}})')
    return [str(raw[k]) for k in sorted(raw, key=lambda k: int(k))]


def _collection_names(channels: Sequence[str]) -> list[str]:
    """Channel names usable as collection names (``channel_<i>`` where one is not, or repeats)."""
    names = [c if _COLLECTION_OK.match(c) and c != LABEL_COLLECTION else f"channel_{i}" for i, c in enumerate(channels)]
    return names if len(set(names)) == len(names) else [f"channel_{i}" for i in range(len(channels))]


def plan_msd(root: str | os.PathLike[str], *, include_test: bool = False) -> LayoutPlan:
    """Reads an MSD task folder (``dataset.json`` with ``training`` pairs). ``include_test``
    also ingests the ``test`` images (no labels) into ``image``; ``obs_meta`` column ``subset``
    says ``training`` or ``test``."""
    base = Path(root)
    ds = read_dataset_json(base)
    where = str(base / "dataset.json")
    channels = _channel_names(ds, "modality", where)
    if not isinstance(ds.get("training"), list):
        raise LayoutError(where, "dataset.json needs a 'training' list of {image, label}")
    plan, subset, training = CohortPlan(), {}, []
    for i, entry in enumerate(ds["training"]):
        if not isinstance(entry, dict) or "image" not in entry:
            plan.problems.append(Problem("image", "", "", where, f"training entry {i} has no 'image'"))
            continue
        case = _case_id(entry["image"], ".nii.gz")
        subset[case] = "training"
        training.append(case)
        _add(plan, "image", case, base / entry["image"], f"training[{i}].image")
        if entry.get("label"):
            _add(plan, LABEL_COLLECTION, case, base / entry["label"], f"training[{i}].label", optional=True)
    if include_test:
        for i, entry in enumerate(ds.get("test") or []):
            rel = entry["image"] if isinstance(entry, dict) else str(entry)
            case = _case_id(rel, ".nii.gz")
            subset[case] = "test"
            _add(plan, "image", case, base / rel, f"test[{i}]")
    plan.obs_meta = pd.DataFrame({"obs_subject_id": list(subset), "subset": list(subset.values())})
    train_plan = CohortPlan([t for t in plan.tasks if subset.get(t.subject_id) == "training"])
    incomplete = find_incomplete(train_plan, ["image", LABEL_COLLECTION])
    meta = {"image": {"channel_names": channels, "dataset": ds.get("name", base.name)}}
    labels = LabelMap.parse(ds.get("labels") or {})
    return LayoutPlan("msd", str(base), plan, {LABEL_COLLECTION: labels}, meta, incomplete)


def _add(plan: CohortPlan, coll: str, case: str, path: Path, row: str, optional: bool = False) -> None:
    if path.exists():
        plan.tasks.append(VolumeTask(coll, case, case, str(path), "auto", row=row))
    elif not optional:
        plan.problems.append(Problem(coll, case, case, str(path), f"{row}: file listed in dataset.json is missing"))


def plan_nnunet(root: str | os.PathLike[str]) -> LayoutPlan:
    """Reads an nnU-Net v2 raw dataset folder (``imagesTr`` / ``labelsTr`` + ``dataset.json``)."""
    base = Path(root)
    ds = read_dataset_json(base)
    where = str(base / "dataset.json")
    channels = (
        _channel_names(ds, "channel_names" if "channel_names" in ds else "modality", where)
        if ("channel_names" in ds or "modality" in ds)
        else _channel_names(ds, "channel_names", where)
    )
    ending = str(ds.get("file_ending", ".nii.gz"))
    names = _collection_names(channels)
    images = base / "imagesTr"
    if not images.is_dir():
        raise LayoutError(str(images), "nnU-Net dataset without imagesTr/")
    pattern = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})" + re.escape(ending) + "$")
    plan = CohortPlan()
    cases: dict[str, None] = {}
    for path in sorted(images.iterdir()):
        if path.name.startswith("."):  # macOS resource forks (._case_0000.nii.gz), editor files
            continue
        m = pattern.match(path.name)
        if not m:
            if path.name.endswith(ending):
                plan.problems.append(Problem("", "", "", str(path), f"not named <case>_<XXXX>{ending}"))
            continue
        ch = int(m.group("ch"))
        if ch >= len(names):
            plan.problems.append(Problem("", m.group("case"), "", str(path), f"channel {ch} is not in channel_names"))
            continue
        cases[m.group("case")] = None
        plan.tasks.append(
            VolumeTask(names[ch], m.group("case"), m.group("case"), str(path), "auto", row=f"imagesTr/{path.name}")
        )
    for case in cases:
        lab = base / "labelsTr" / f"{case}{ending}"
        if lab.exists():
            plan.tasks.append(VolumeTask(LABEL_COLLECTION, case, case, str(lab), "auto", row=f"labelsTr/{lab.name}"))
    n = ds.get("numTraining")
    if isinstance(n, int) and n != len(cases):
        plan.problems.append(Problem("", "", "", where, f"numTraining is {n} but imagesTr holds {len(cases)} case(s)"))
    plan.obs_meta = pd.DataFrame({"obs_subject_id": list(cases)})
    order = [*names, LABEL_COLLECTION]
    plan.tasks.sort(key=lambda t: order.index(t.collection))
    raw_labels = ds.get("labels") or {}
    regions = {k: v for k, v in raw_labels.items() if isinstance(v, (list, tuple))}
    label_meta: dict[str, Any] = {"file_ending": ending}
    if regions:
        label_meta["label_regions"] = regions
        label_meta["regions_class_order"] = ds.get("regions_class_order")
    meta = {name: {"channel_names": [channels[i]], "channel_index": i} for i, name in enumerate(names)}
    meta[LABEL_COLLECTION] = label_meta
    incomplete = find_incomplete(plan, order)
    return LayoutPlan("nnunet", str(base), plan, {LABEL_COLLECTION: LabelMap.parse(raw_labels)}, meta, incomplete)


def export_nnunet(
    radi: Any,
    out: str | os.PathLike[str],
    *,
    channels: Sequence[str] | None = None,
    label: str | None = LABEL_COLLECTION,
    file_ending: str = ".nii.gz",
    progress: bool = False,
) -> Path:
    """Writes ``out/imagesTr/{subject}_{XXXX}{ending}`` per channel (in ``channels`` order; a 4D
    collection, e.g. MSD's multi-modal images, gives one 3D file per channel, as nnU-Net v2 reads
    them), ``out/labelsTr/{subject}{ending}`` from ``label`` and ``out/dataset.json``
    (``channel_names``, ``labels`` from the label map, ``numTraining``, ``file_ending``).
    Only subjects with every channel (and a label) are written; geometry and dtype as stored.
    ``channels=None``: every collection that is not ``label`` nor a label collection, in the channel
    order recorded at ingest (else store order).

    Checked before anything is written (``LayoutError``): the collections exist, each channel has
    one channel count, every label volume is of an integer dtype, ``out`` is new or empty. The
    dataset is written beside ``out`` and moved there once complete, so a failed export leaves no
    ``out``; ``dataset.json``'s labels are the values the written labels hold plus the label map's."""
    from radiobject.model.labels import is_label_collection, read_collection_meta

    if channels is None:  # the channel order recorded at ingest (``channel_index``), else store order
        images = [n for n in radi.collection_names if n != label and not is_label_collection(radi[n])]
        order = {n: read_collection_meta(radi[n]).get("channel_index", len(images)) for n in images}
        channels = sorted(images, key=lambda n: (order[n], images.index(n)))
        if not channels:
            raise LayoutError(radi.uri, "no image collection to export (name them with channels=)")

    if file_ending not in (".nii.gz", ".nii"):
        raise ValueError(f"export_nnunet writes NIfTI: file_ending must be .nii.gz or .nii, not {file_ending!r}")
    names = [*channels, *([label] if label else [])]
    missing = [n for n in names if n not in radi.collection_names]
    if missing:
        raise LayoutError(radi.uri, f"no collection(s) {missing}")
    by_coll = {n: dict(zip(radi[n].obs_subject_ids, radi[n].obs_ids, strict=True)) for n in names}
    cases = [s for s in radi.obs_subject_ids if all(s in by_coll[n] for n in names)]
    widths = {ch: _channels_of(radi, ch, [by_coll[ch][c] for c in cases]) for ch in channels}
    if label:
        _check_integer_labels(radi, label, {c: by_coll[label][c] for c in cases})
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise LayoutError(str(root), "exists and is not an empty folder: export into a new (or empty) one")
    root.parent.mkdir(parents=True, exist_ok=True)
    # written into a hidden sibling, moved to ``out`` once complete: a failed export leaves no dataset
    stage = root.parent / f".{root.name}.partial-{uuid.uuid4().hex[:12]}"
    stage.mkdir()  # the mode a plain mkdir gives (umask), as ``out`` would have
    try:
        present = _write_cases(radi, stage, cases, channels, label, by_coll, widths, file_ending, progress)
        ds = _dataset_json(radi, channels, label, widths, present, len(cases), file_ending)
        (stage / "dataset.json").write_text(json.dumps(ds, indent=2))
        if root.exists():
            root.rmdir()  # empty (checked above)
        os.replace(stage, root)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return root


def _check_integer_labels(radi: Any, label: str, obs_ids: dict[str, str]) -> None:
    """nnU-Net labels are integer class values: a label volume of another dtype (float) is a
    ``LayoutError`` naming the collection and the subject, before anything is written."""
    for case, oid in obs_ids.items():
        dtype = np.dtype(radi[label].volume(oid).dtype)
        if dtype.kind not in "biu":
            raise LayoutError(
                radi.uri,
                f"label collection {label!r}, subject {case!r}: dtype {dtype} is not an integer label; nnU-Net "
                "labels are integer class values (store the label as an integer collection, or pass another --label)",
            )


def _write_cases(
    radi: Any,
    root: Path,
    cases: Sequence[str],
    channels: Sequence[str],
    label: str | None,
    by_coll: dict[str, dict[str, str]],
    widths: dict[str, int],
    file_ending: str,
    progress: bool,
) -> set[int]:
    """Writes imagesTr / labelsTr; returns the label values present in the written labels."""
    (root / "imagesTr").mkdir()
    if label:
        (root / "labelsTr").mkdir()
    present: set[int] = set()
    for case in tqdm(cases, desc="export nnU-Net", disable=not progress):
        first = 0
        for ch in channels:
            vol = radi[ch].volume(by_coll[ch][case])
            if vol.ndim == 3:
                vol.to_nifti(root / "imagesTr" / f"{case}_{first:04d}{file_ending}")
            else:  # one 3D file per channel of a 4D volume
                data = vol.to_numpy()
                for c in range(widths[ch]):
                    path = root / "imagesTr" / f"{case}_{first + c:04d}{file_ending}"
                    write_nifti(path, data[..., c], vol.affine, vol.metadata)
            first += widths[ch]
        if label:
            lab = radi[label].volume(by_coll[label][case])
            data = lab.to_numpy()
            present.update(int(v) for v in np.unique(data))
            write_nifti(root / "labelsTr" / f"{case}{file_ending}", data, lab.affine, lab.metadata)
    return present


def _dataset_json(
    radi: Any,
    channels: Sequence[str],
    label: str | None,
    widths: dict[str, int],
    present: set[int],
    n_cases: int,
    file_ending: str,
) -> dict[str, Any]:
    """``dataset.json``: channel names, labels (the values written and the label map's), counts."""
    from radiobject.model.labels import read_collection_meta

    channel_names: dict[str, str] = {}
    for ch in channels:
        stored = [str(n) for n in read_collection_meta(radi[ch]).get("channel_names") or []]
        names_here = stored if len(stored) == widths[ch] else [ch] if widths[ch] == 1 else []
        for c in range(widths[ch]):
            channel_names[str(len(channel_names))] = names_here[c] if names_here else f"{ch}_{c}"
    labels: dict[str, Any] = {}
    region_order = None
    if label:
        lm = get_label_map(radi[label])
        label_meta = read_collection_meta(radi[label])
        regions = label_meta.get("label_regions") or {}
        values = sorted(present | (set(lm.names) if lm else set()) | {0})
        if regions:  # region-based labels: a value is named by its regions, not as a class of its own
            values = [v for v in values if v == 0 or (lm is not None and v in lm.names)]
        labels = {
            ("background" if v == 0 and (lm is None or v not in lm.names) else (lm.name(v) if lm else f"label_{v}")): v
            for v in values
        }
        labels.update(regions)
        region_order = label_meta.get("regions_class_order") if regions else None
    ds = {"channel_names": channel_names, "labels": labels, "numTraining": n_cases, "file_ending": file_ending}
    if region_order is not None:
        ds["regions_class_order"] = region_order
    return ds


def _channels_of(radi: Any, collection: str, obs_ids: Sequence[str]) -> int:
    """Channels per case of ``collection``: 1 for 3D volumes, the last axis of 4D ones; every case
    must agree (``LayoutError`` otherwise, before anything is written)."""
    widths = {}
    for oid in obs_ids:
        vol = radi[collection].volume(oid)
        if vol.ndim not in (3, 4):
            raise LayoutError(radi.uri, f"{collection}/{oid}: a {vol.ndim}D volume cannot be an nnU-Net channel")
        widths[oid] = 1 if vol.ndim == 3 else int(vol.shape[3])
    if len(set(widths.values())) > 1:
        counts = sorted(set(widths.values()))
        raise LayoutError(radi.uri, f"{collection}: cases hold different channel counts {counts}; nnU-Net needs one")
    return next(iter(widths.values()), 1)
