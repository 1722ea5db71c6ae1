"""``radiobject ingest-layout bids|msd|nnunet`` and ``radiobject export-nnunet``.

Exit codes: 0 when every volume is stored, 1 when any failed (or ``--incomplete error`` found
incomplete subjects), 2 on bad arguments or a folder that is not the named layout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import replace
from typing import Any

from radiobject.cli._args import (
    add_storage_arguments,
    check_report_path,
    check_store_uri,
    interrupted_ingest,
    item_timeout_options,
    lossy_arg,
    stop_signals,
    storage_from_args,
    write_report,
)
from radiobject.cli._write_args import add_write_arguments

__all__ = [
    "LAYOUT_APPLIED",
    "LAYOUT_REFUSED",
    "layout_flag_error",
    "register",
    "run_export_nnunet",
    "run_ingest_layout",
    "run_layout_from_ingest",
]

LAYOUTS: tuple[str, ...] = ("bids", "msd", "nnunet")

#: ``radiobject ingest`` options (argparse dests) that ``--layout`` applies as the plain ingest
#: does, plus the positional / source ones. Any other option given (not at its parser default)
#: is refused with exit 2 before anything is written: never accepted and then ignored.
LAYOUT_APPLIED: frozenset[str] = frozenset(
    {
        *("command", "func", "out", "layout", "manifest", "images", "dicom_root"),  # what and where
        *("incomplete", "subjects", "philips_scaling", "resample_tilt", "tiff_series"),  # the plan
        *("backend", "workers", "executor", "compression", "level", "lossy", "chunks", "commit_every"),
        *("canonical", "validate_alignment", "fail_fast", "on_changed", "rehash", "json", "scheduler"),
        *("no_progress", "item_timeout", "s3_endpoint", "s3_key", "s3_secret", "s3_region", "s3_anon"),
        *("s3_timeout", "s3_retries"),
    }
)
#: Why an ``ingest`` option does not apply with ``--layout`` (and what to use instead).
LAYOUT_REFUSED: dict[str, str] = {
    "obs_columns": "it picks --manifest columns; a layout's columns come from its own files",
    "subject_pattern": "a layout names its subjects itself (BIDS sub-XX, MSD / nnU-Net case IDs); "
    "use --images for subjects named by a regex",
    "dicom_collection_key": "it names the series of a --dicom-root; a layout names its collections itself",
}
#: Applied options that one layout kind cannot apply: (dest, kind) -> why.
_KIND_REFUSED: dict[tuple[str, str], str] = {
    ("philips_scaling", "bids"): "a BIDS dataset's images are NIfTI, no DICOM",
    ("resample_tilt", "bids"): "a BIDS dataset's images are NIfTI, no DICOM",
}
#: ``run_ingest`` keywords that ``ingest-layout`` and ``ingest --layout`` pass on.
_RUN_OPTIONS: tuple[str, ...] = ("canonical", "fail_fast", "on_changed", "rehash", "executor")


def register(subparsers: Any) -> None:
    """Adds ``ingest-layout`` and ``export-nnunet``."""
    p = subparsers.add_parser(
        "ingest-layout",
        help="ingest a BIDS, MSD or nnU-Net dataset folder (labels, channels, sessions)",
        description="Ingest a dataset in a layout users already have. BIDS: subject IDs keep 'sub-', "
        "sessions are samples (sub-01_ses-pre) with participant_id kept, participants.tsv joined, "
        "n/a missing, JSON sidecars as obs columns, DWI .bval/.bvec stored with the volume. "
        "MSD / nnU-Net: dataset.json read (channel names, labels, training list, file ending); "
        "the label collection gets its label map and class counts.",
    )
    p.add_argument("layout", choices=LAYOUTS)
    p.add_argument("path", metavar="PATH", help="dataset folder (BIDS root, MSD TaskXX_*, nnU-Net DatasetXXX_*)")
    p.add_argument("-o", "--out", required=True, metavar="STORE", help="store to create or extend")
    p.add_argument(
        "--incomplete",
        choices=("keep", "skip", "error"),
        default="keep",
        help="subjects missing a collection (e.g. an image without label): keep (default, "
        "reported), skip them, or stop with the list",
    )
    p.add_argument("--suffixes", nargs="+", metavar="SUFFIX", help="BIDS: only these suffixes (T1w dwi ...)")
    p.add_argument("--datatypes", nargs="+", metavar="DIR", help="BIDS: only these datatype folders (anat dwi ...)")
    p.add_argument("--include-test", action="store_true", help="MSD: also ingest the test images (no labels)")
    p.add_argument(
        "--tiff-series",
        type=int,
        default=None,
        metavar="N",
        help="MSD / nnU-Net: the series to read of TIFFs that hold several images (default: a TIFF's "
        "one image series; a TIFF of several is an error listing them); refused for BIDS (NIfTI only)",
    )
    p.add_argument("--subjects", metavar="TABLE", help="subject table (e.g. participants.csv) joined into obs_meta")
    add_write_arguments(
        p,
        alignment_help="hold back subjects whose volumes differ in shape or affine (default on; BIDS "
        "modalities keep their own grids and are not checked)",
    )
    p.set_defaults(func=run_ingest_layout)

    e = subparsers.add_parser(
        "export-nnunet",
        help="write a store as an nnU-Net raw dataset (imagesTr, labelsTr, dataset.json)",
        description="Write subjects that have every channel (and the label) as an nnU-Net v2 "
        "raw dataset: imagesTr/<subject>_<XXXX>.nii.gz, labelsTr/<subject>.nii.gz, dataset.json.",
    )
    e.add_argument("uri", metavar="STORE")
    e.add_argument("out", metavar="OUT", help="dataset folder, e.g. nnUNet_raw/Dataset001_Brain")
    e.add_argument(
        "--channels",
        nargs="+",
        metavar="COLL",
        help="image collections, in channel order (default: every non-label collection, in store order)",
    )
    e.add_argument("--label", default="label", metavar="COLL", help="label collection (default label; 'none' for none)")
    e.add_argument("--uncompressed", action="store_true", help="write .nii instead of .nii.gz")
    add_storage_arguments(e)
    e.set_defaults(func=run_export_nnunet)


def _plan(args: argparse.Namespace) -> Any:
    from radiobject.ingest.layouts.bids import plan_bids
    from radiobject.ingest.layouts.msd import plan_msd, plan_nnunet

    if args.layout == "bids":
        return plan_bids(args.path, suffixes=args.suffixes, datatypes=args.datatypes)
    if args.layout == "msd":
        return plan_msd(args.path, include_test=args.include_test)
    return plan_nnunet(args.path)


def _options(args: argparse.Namespace) -> Any:
    """Write options; ``radiobject ingest --layout`` also passes its codec / chunk / lossy arguments."""
    from radiobject.model.options import WriteOptions
    from radiobject.storage.base import Codec

    limit = item_timeout_options(args)
    if getattr(args, "compression", None):
        codec = Codec.parse(args.compression, args.level)
        lossy = lossy_arg(args.lossy)
        return WriteOptions(args.backend, args.chunks, codec, args.workers, args.commit_every, lossy=lossy, **limit)
    return WriteOptions(args.backend, workers=args.workers, **limit)


def _dicom_options(args: argparse.Namespace) -> dict[str, str]:
    """``ingest --layout``'s DICOM reader options (``--philips-scaling``, ``--resample-tilt``) given."""
    pairs = ((k, getattr(args, k, None)) for k in ("philips_scaling", "resample_tilt"))
    return {k: v for k, v in pairs if v}


def _ingest_plan(args: argparse.Namespace) -> Any:
    """The layout plan with what ``ingest --layout`` adds: ``--tiff-series``, ``--subjects`` and
    the DICOM reader options, each travelling with its tasks as on the plain ingest path."""
    from radiobject.ingest.layouts import apply_subjects, apply_tiff_series

    series = getattr(args, "tiff_series", None)  # `ingest --layout` passes its own --tiff-series
    if series is not None and series < 0:
        raise ValueError(f"--tiff-series must be >= 0, not {series}")
    lp = apply_subjects(apply_tiff_series(_plan(args), series, "--tiff-series"), getattr(args, "subjects", None))
    dicom = _dicom_options(args)
    if dicom:
        tasks = [replace(t, dicom_options={**t.dicom_options, **dicom}) for t in lp.plan.tasks]
        lp = replace(lp, plan=replace(lp.plan, tasks=tasks))
    return lp


def run_ingest_layout(args: argparse.Namespace) -> int:
    """Runs ``radiobject ingest-layout``."""
    from radiobject.errors import LayoutError, RadiObjectError
    from radiobject.ingest.layouts import ingest_layout

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    for (dest, kind), why in _KIND_REFUSED.items():
        if kind == args.layout and getattr(args, dest, None):
            print(f"error: --{dest.replace('_', '-')} does not apply to a {kind} dataset ({why})", file=sys.stderr)
            return 2
    try:
        check_store_uri(args.out)
        if args.json:
            check_report_path(args.json, args.out)
        lp = _ingest_plan(args)
        options = _options(args)
        for name in lp.plan.collections:  # a lossy label collection is refused before anything is written
            options.for_collection(name)
    except (RadiObjectError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.layout} dataset {args.path}: {len(lp.plan.tasks)} volume(s) in {len(lp.plan.collections)} "
        f"collection(s) {lp.plan.collections}, {len(lp.plan.problems)} problem(s)",
        file=sys.stderr,
    )
    run = {k: getattr(args, k) for k in _RUN_OPTIONS if hasattr(args, k)}
    try:
        with contextlib.ExitStack() as stack, stop_signals():
            scheduler = getattr(args, "scheduler", None)
            if scheduler:  # every volume written by a Dask worker, as `ingest --scheduler`
                from distributed import Client

                from radiobject.ingest.dask import dask_submitter

                run["submitter"] = dask_submitter(stack.enter_context(Client(scheduler, timeout="30s")))
            report = ingest_layout(
                args.out,
                lp,
                incomplete=args.incomplete,
                log=log,
                options=options,
                storage=storage_from_args(args),
                validate_alignment=args.validate_alignment,
                progress=not args.no_progress,
                **run,
            )
    except LayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (RadiObjectError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: consistent, and a re-run resumes
        return interrupted_ingest(exc, args.out)
    print(report.summary_table())
    dicom = _dicom_options(args)
    if dicom.get("philips_scaling"):
        print(f"Philips DICOM scaling: {dicom['philips_scaling']} (per volume: metadata philips_scaling)")
    if args.json:
        payload = report.to_dict()
        if dicom:  # the reader options every DICOM volume was read with
            payload["dicom_options"] = dicom
        write_report(args.json, payload)
    return 0 if report.ok else 1


def layout_flag_error(args: argparse.Namespace, kind: str) -> str | None:
    """Why ``radiobject ingest --layout KIND`` refuses ``args``: the first option given (not at its
    parser default) that the layout path does not apply (``LAYOUT_REFUSED``, or one of
    ``LAYOUT_APPLIED`` that ``kind`` cannot apply); ``None`` when every option given applies."""
    defaults = getattr(args, "option_defaults", {})  # set by ``radiobject ingest``'s parser
    for dest, value in vars(args).items():
        if dest in ("command", "func", "option_defaults") or value == defaults.get(dest):
            continue
        flag = "--" + dest.replace("_", "-")
        if dest not in LAYOUT_APPLIED:
            why = LAYOUT_REFUSED.get(dest, "the layout ingest has no such option")
            return f"{flag} does not apply with --layout ({why})"
        if (dest, kind) in _KIND_REFUSED:
            return f"{flag} does not apply with --layout {kind} ({_KIND_REFUSED[dest, kind]})"
    return None


def run_layout_from_ingest(args: argparse.Namespace) -> int:
    """``radiobject ingest STORE --layout KIND DIR``: ``ingest-layout KIND DIR -o STORE`` with
    ``ingest``'s options (``LAYOUT_APPLIED``); one that does not apply exits 2, nothing written."""
    kind, path = args.layout
    if kind not in LAYOUTS:
        print(f"error: --layout KIND must be one of {', '.join(LAYOUTS)}, not {kind!r}", file=sys.stderr)
        return 2
    problem = layout_flag_error(args, kind)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    ns = argparse.Namespace(**vars(args))
    ns.layout, ns.path, ns.out = kind, path, args.out
    for name, default in (("suffixes", None), ("datatypes", None), ("include_test", False)):
        if not hasattr(ns, name):
            setattr(ns, name, default)
    return run_ingest_layout(ns)


def run_export_nnunet(args: argparse.Namespace) -> int:
    """Runs ``radiobject export-nnunet``."""
    from radiobject.errors import RadiObjectError
    from radiobject.ingest.layouts.msd import export_nnunet
    from radiobject.ingest.target import refuse_inside_store
    from radiobject.model.radi_object import RadiObject

    try:
        radi = RadiObject(args.uri, storage=storage_from_args(args))
        refuse_inside_store(args.out, "the nnU-Net dataset")
        label = None if args.label.lower() == "none" else args.label
        out = export_nnunet(
            radi,
            args.out,
            channels=args.channels,
            label=label,
            file_ending=".nii" if args.uncompressed else ".nii.gz",
            progress=True,
        )
    except (RadiObjectError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = json.loads((out / "dataset.json").read_text())
    print(f"wrote nnU-Net dataset {out}: {meta['numTraining']} case(s), {len(meta['channel_names'])} channel(s)")
    return 0
