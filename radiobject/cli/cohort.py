"""``radiobject stats | split | resample | labels``: cohort tools over a store.

Exit codes: 0 success, 2 when the store cannot be opened or the arguments are wrong; ``resample``:
130 after Ctrl-C, 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from radiobject.cli._args import (
    add_storage_arguments,
    int_in,
    interrupted,
    stop_signals,
    storage_from_args,
)

__all__ = ["register", "run_labels", "run_resample", "run_split", "run_stats"]


def _spacing(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z millimetres, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive numbers X,Y,Z (mm), got {text!r}")
    return parts[0], parts[1], parts[2]


def register(subparsers: Any) -> None:
    """Adds ``stats``, ``split``, ``resample`` and ``labels``."""
    p = subparsers.add_parser(
        "stats",
        help="cohort summary: shapes, spacings, orientations, classes, intensities",
        description="Summarise a store: per collection the shapes, spacings, orientations and "
        "dtypes; label maps and voxels per class; and (unless --no-intensity) foreground "
        "intensity mean / std / percentiles per image collection and channel.",
    )
    p.add_argument("uri", metavar="STORE")
    p.add_argument("--collections", nargs="+", metavar="NAME", help="image collections for the intensity statistics")
    p.add_argument(
        "--mask",
        default="auto",
        metavar="LABEL",
        help="label collection whose > 0 voxels are the foreground (default auto; 'none': non-zero voxels)",
    )
    p.add_argument("--no-intensity", action="store_true", help="tables only: no pixel reads")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_storage_arguments(p)
    p.set_defaults(func=run_stats)

    p = subparsers.add_parser(
        "split",
        help="k-fold / train-val split of the subjects, stored in obs_meta",
        description="Assign every subject a fold (column 'fold', 0..k-1) and a split (column "
        "'split': 'val' for --val-fold, else 'train'), stratified by a column and grouped so "
        "that all sessions of one participant share a fold. Loaders read these columns "
        "(split=, fold=).",
    )
    p.add_argument("uri", metavar="STORE")
    p.add_argument("-k", "--folds", type=int_in(2, what="folds"), default=5, help="number of folds (default 5)")
    p.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="one train/val split instead of folds (e.g. 0.2); a fold column of an earlier split is dropped",
    )
    p.add_argument(
        "--val-fold", type=int_in(0, what="val fold"), default=0, help="fold written as split=val (default 0)"
    )
    p.add_argument("--stratify", metavar="COLUMN", help="obs_meta column to balance across folds")
    p.add_argument(
        "--group",
        default="auto",
        metavar="COLUMN",
        help="obs_meta column kept within one fold (default auto: participant_id when it groups sessions; 'none')",
    )
    p.add_argument("--seed", type=int, default=0)
    add_storage_arguments(p)
    p.set_defaults(func=run_split)

    p = subparsers.add_parser(
        "resample",
        help="resample a collection to a target spacing (a new collection)",
        description="Write COLLECTION resampled to --spacing (mm) as a new collection of the "
        "store "
        "(same field of view; linear for images, nearest for label collections).",
    )
    p.add_argument("uri", metavar="STORE")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument(
        "--spacing", type=_spacing, required=True, metavar="X,Y,Z", help="target voxel size in mm (or one number)"
    )
    p.add_argument("--out", metavar="NAME", help="new collection name (default <collection>_<x>x<y>x<z>mm)")
    p.add_argument("--order", type=int_in(0, 5, "order"), help="spline order (default 0 for labels, 1 for images)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_storage_arguments(p)
    p.set_defaults(func=run_resample)

    p = subparsers.add_parser(
        "labels",
        help="show or set a label collection's label map; record class counts",
        description="Show the label map and class counts of a label collection, or set the map "
        "(--set '1=tumour,2=edema') and record per-volume class counts (--count).",
    )
    p.add_argument("uri", metavar="STORE")
    p.add_argument("collection", metavar="COLLECTION")
    p.add_argument("--set", dest="label_map", metavar="V=NAME,...", help="store this label map")
    p.add_argument(
        "--count", action="store_true", help="record class voxel counts per volume (obs column class_counts)"
    )
    p.add_argument("--weights", choices=("inverse", "median", "sqrt", "effective"), help="print class weights")
    add_storage_arguments(p)
    p.set_defaults(func=run_labels)


def _open(args: argparse.Namespace) -> Any:
    from radiobject.model.radi_object import RadiObject

    return RadiObject(args.uri, storage=storage_from_args(args))


def run_stats(args: argparse.Namespace) -> int:
    """Prints the cohort summary and intensity statistics."""
    from radiobject.model.stats import cohort_summary, intensity_stats

    try:
        radi = _open(args)
        summary = cohort_summary(radi)
        mask = None if args.mask.lower() == "none" else args.mask
        if mask not in (None, "auto") and mask not in radi.collection_names:
            raise ValueError(f"no collection {mask!r} in {args.uri}")
        inten = (
            None if args.no_intensity else intensity_stats(radi, args.collections, mask=mask, progress=not args.json)
        )
    except Exception as exc:  # noqa: BLE001 - any open failure is a usage error here
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = {**summary, "intensity": [] if inten is None else inten.to_dict("records")}
        print(json.dumps(out, indent=1, default=str))
        return 0
    print(f"{summary['uri']}: {summary['subjects']} subjects")
    for name, c in summary["collections"].items():
        print(
            f"{name}: {c['volumes']} volume(s), shapes {c['shapes']}, spacings {c['spacings']} mm, "
            f"orientations {c['orientations']}, dtypes {c['dtypes']}"
        )
        if "labels" in c:
            print(
                f"  labels {c['labels'] or '(no map)'}; voxels per class {c.get('class_voxels', '?')}; "
                f"volumes per class {c.get('class_volumes', '?')}"
            )
    if inten is not None and len(inten):
        import pandas as pd

        with pd.option_context("display.width", 160, "display.max_columns", 30, "display.precision", 4):
            print(inten.to_string(index=False))
    return 0


def run_split(args: argparse.Namespace) -> int:
    """Writes fold / split columns into obs_meta and prints the fold sizes."""
    from radiobject.model.splits import FOLD, SPLIT, split_store

    try:
        radi = _open(args)
        group = None if args.group.lower() == "none" else args.group
        if args.val_fraction is not None:
            sp = split_store(
                radi, k=None, val_fraction=args.val_fraction, stratify=args.stratify, group=group, seed=args.seed
            )
        else:
            sp = split_store(
                radi, k=args.folds, val_fold=args.val_fold, stratify=args.stratify, group=group, seed=args.seed
            )
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if FOLD in sp.columns:
        sizes = sp[FOLD].value_counts().sort_index().to_dict()
        print(f"{len(sp)} subjects in {len(sizes)} folds: " + ", ".join(f"fold {k}: {v}" for k, v in sizes.items()))
    counts = sp[SPLIT].value_counts().to_dict()
    print(
        f"split: {counts.get('train', 0)} train, {counts.get('val', 0)} val (obs_meta columns: "
        f"{', '.join(c for c in (FOLD, SPLIT) if c in sp.columns)})"
    )
    return 0


def run_resample(args: argparse.Namespace) -> int:
    """Writes the resampled collection; 130 after Ctrl-C, 143 after SIGTERM (a collection the run
    created is removed again, as after any failure: the same command retried starts afresh)."""
    from radiobject.model.resample import resample_collection

    try:
        radi = _open(args)
        if args.collection not in radi.collection_names:
            raise ValueError(f"no collection {args.collection!r} in {args.uri}")
        with stop_signals():
            out = resample_collection(
                radi, args.collection, args.spacing, out=args.out, order=args.order, progress=not args.no_progress
            )
    except KeyboardInterrupt as exc:
        return interrupted(exc, "a collection this run created was removed; re-run the command")
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote collection {out.name}: {len(out)} volume(s) at {args.spacing} mm")
    return 0


def run_labels(args: argparse.Namespace) -> int:
    """Shows (and optionally sets) the label map, counts and weights."""
    from radiobject.model.labels import (
        class_counts_table,
        class_weights,
        get_label_map,
        record_class_counts,
        set_label_map,
    )

    try:
        radi = _open(args)
        if args.collection not in radi.collection_names:
            raise ValueError(f"no collection {args.collection!r} in {args.uri}")
        coll = radi[args.collection]
        if args.label_map:
            set_label_map(coll, args.label_map)
        table = record_class_counts(coll, progress=True) if args.count else None
        lm = get_label_map(coll)
        shown = ", ".join(f"{v}={n}" for v, n in lm.names.items()) if lm else "(none)"
        print(f"{args.collection}: label map {shown}")
        if table is not None or args.weights:
            table = table if table is not None else class_counts_table(coll)
            print("voxels per class: " + ", ".join(f"{c}={int(table[c].sum())}" for c in table.columns))
        if args.weights:
            w = class_weights(table, method=args.weights)
            print(f"class weights ({args.weights}): " + ", ".join(f"{k}={v:.4g}" for k, v in w.items()))
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
