"""``radiobject ingest`` (a cohort -> a store) and ``radiobject sample-cohort`` (demo data).

Exit codes: 0 when every item is stored (newly, replaced or already), 1 when any item failed or
the run stopped, 2 on bad arguments or inputs (a manifest, a glob, a target folder, collections
whose subject IDs never pair: ``AlignmentError``), 130 after
Ctrl-C (SIGINT) and 143 after SIGTERM — the store is consistent and a re-run resumes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from radiobject.cli._args import (
    check_report_path,
    check_store_uri,
    interrupted_ingest,
    item_timeout_options,
    lossy_arg,
    positive_int,
    regex,
    stop_signals,
    storage_from_args,
    write_report,
)
from radiobject.cli._write_args import add_write_arguments, triple
from radiobject.errors import RadiObjectError
from radiobject.storage.base import Codec

__all__ = ["register", "run_ingest_command", "run_sample_cohort"]


def _image_spec(value: str) -> tuple[str, str]:
    name, sep, pattern = value.partition("=")
    if not sep or not name or not pattern:
        hint = (
            ""
            if sep
            else " (--images takes every word after it: put OUT_URI first, "
            "radiobject ingest OUT_URI --images NAME=GLOB ...)"
        )
        raise argparse.ArgumentTypeError(f"expected NAME=GLOB, got {value!r}{hint}")
    return name, pattern


def register(subparsers: Any) -> None:
    """Adds ``ingest`` and ``sample-cohort``."""
    p = subparsers.add_parser(
        "ingest",
        help="ingest a cohort (manifest, globs or a DICOM tree) into a store",
        description="Ingest a cohort into a radiobject store (local path or s3://bucket/prefix). "
        "Re-running finishes an interrupted ingest: stored volumes are skipped.",
    )
    p.add_argument("out", metavar="OUT_URI", help="store to create or extend")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--manifest",
        metavar="FILE",
        help="CSV / TSV / Parquet with subject_id, collection, path [, obs_id, format, metadata...]",
    )
    src.add_argument(
        "--images",
        nargs="+",
        type=_image_spec,
        metavar="NAME=GLOB",
        help="one glob per collection, e.g. T1w='data/*/t1.nii.gz' (quote it)",
    )
    src.add_argument("--dicom-root", metavar="DIR", help="one folder per subject holding DICOM studies")
    src.add_argument(
        "--layout",
        nargs=2,
        metavar=("KIND", "DIR"),
        help="a dataset layout: bids, msd or nnunet and its folder (as radiobject ingest-layout)",
    )
    p.add_argument(
        "--incomplete",
        choices=("keep", "skip", "error"),
        default="keep",
        help="with --layout: subjects missing a collection are kept (default), skipped, or an error",
    )
    p.add_argument("--subjects", metavar="TABLE", help="subject table (e.g. participants.csv) -> obs_meta")
    p.add_argument(
        "--obs-columns",
        metavar="A,B",
        default="",
        help="manifest columns kept per volume (obs) even when constant per subject",
    )
    p.add_argument("--subject-pattern", metavar="RE", type=regex, help="regex whose first group is the subject ID")
    p.add_argument(
        "--dicom-collection-key",
        choices=("description", "modality", "series_number"),
        default="description",
        help="what names a DICOM series' collection (default: description)",
    )
    p.add_argument(
        "--tiff-series",
        type=int,
        default=None,
        metavar="N",
        help="the series to read of TIFFs that hold several images (default: a TIFF's one image "
        "series; a TIFF of several is an error listing them); also with --layout msd|nnunet",
    )
    add_write_arguments(
        p,
        alignment_help="hold back subjects whose volumes differ in shape or affine, and refuse collections whose "
        "subject IDs never pair (default on, as in Python)",
    )
    # what each option is when left out: ``--layout`` refuses the options it cannot apply, given ones only
    p.set_defaults(func=run_ingest_command)
    p.set_defaults(option_defaults={a.dest: a.default for a in p._actions if a.dest != "help"})

    s = subparsers.add_parser(
        "sample-cohort",
        help="write a small synthetic NIfTI cohort (T1w, FLAIR, seg)",
        description="Write a synthetic cohort: DIR/sub-XX/anat/sub-XX_{T1w,FLAIR,seg}.nii.gz, "
        "DIR/participants.csv and DIR/manifest.csv.",
    )
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--subjects", type=positive_int, default=8, help="number of subjects (default 8)")
    s.add_argument("--shape", type=triple, default=(48, 56, 40), metavar="X,Y,Z", help="default 48,56,40")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run_sample_cohort)


def run_sample_cohort(args: argparse.Namespace) -> int:
    """Writes the sample cohort and prints how to ingest it."""
    from radiobject.ingest.sample import make_sample_cohort
    from radiobject.ingest.target import refuse_inside_store

    try:
        refuse_inside_store(args.dir, "the sample cohort")
        c = make_sample_cohort(args.dir, args.subjects, tuple(args.shape), seed=args.seed)
    except (ValueError, OSError, RadiObjectError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(c.subjects)} subjects x 3 images (T1w, FLAIR, seg) under {c.folder}")
    print(f"  subjects: {c.participants}\n  manifest: {c.manifest}")
    print(f"ingest:  radiobject ingest STORE --manifest {c.manifest} --subjects {c.participants}")
    return 0


def _plan(args: argparse.Namespace) -> Any:
    from radiobject.ingest.manifest import (
        plan_from_dicom_root,
        plan_from_globs,
        plan_from_manifest,
    )

    if args.manifest:
        cols = [c for c in args.obs_columns.split(",") if c]
        return plan_from_manifest(args.manifest, subjects=args.subjects, obs_columns=cols)
    if args.images:
        specs: dict[str, list[str]] = {}
        for name, pattern in args.images:
            specs.setdefault(name, []).append(pattern)
        return plan_from_globs(specs, subject_pattern=args.subject_pattern, subjects=args.subjects)
    return plan_from_dicom_root(args.dicom_root, collection_key=args.dicom_collection_key, subjects=args.subjects)


#: How to pair the IDs of collections that never pair (the CLI's options).
_PAIRING_HINT = (
    "pass --subject-pattern '(sub-[^_/]+)', give subject_id per row in a --manifest, "
    "or --no-validate-alignment for collections of different subjects"
)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def run_ingest_command(args: argparse.Namespace) -> int:
    """Runs ``radiobject ingest``."""
    if getattr(args, "layout", None):  # --layout KIND DIR: the layout command's path (labels, channels)
        from radiobject.cli.layouts import run_layout_from_ingest

        return run_layout_from_ingest(args)
    if args.incomplete != "keep":  # never ignored: it decides what a layout does with partial subjects
        print(f"error: --incomplete {args.incomplete} applies only with --layout", file=sys.stderr)
        return 2
    from radiobject.ingest.cohort import run_ingest
    from radiobject.model.options import WriteOptions

    try:
        check_store_uri(args.out)
        codec = Codec.parse(args.compression, args.level)
        options = WriteOptions(
            args.backend,
            args.chunks,
            codec,
            args.workers,
            args.commit_every,
            lossy=lossy_arg(args.lossy),
            **item_timeout_options(args),
        )
        plan = _plan(args)
        if args.validate_alignment and not args.dicom_root:  # IDs from file names / a manifest
            from radiobject.ingest.manifest import check_pairing

            check_pairing(plan, _PAIRING_HINT)
        dicom_options = {
            k: v for k, v in (("philips_scaling", args.philips_scaling), ("resample_tilt", args.resample_tilt)) if v
        }
        if dicom_options:  # travels with each task to the (possibly remote) reader
            plan.tasks = [replace(t, dicom_options={**t.dicom_options, **dicom_options}) for t in plan.tasks]
        if args.tiff_series is not None:
            if args.tiff_series < 0:
                raise ValueError(f"--tiff-series must be >= 0, not {args.tiff_series}")
            if args.dicom_root:  # never accepted and then ignored
                raise ValueError("--tiff-series does not apply to --dicom-root: it reads DICOM series, no TIFF")
            plan.tasks = [replace(t, tiff_series=args.tiff_series) for t in plan.tasks]
        for name in plan.collections:  # a lossy label collection is refused before anything is written
            options.for_collection(name)
        if args.json:
            check_report_path(args.json, args.out)
    except (ValueError, OSError, RadiObjectError) as exc:  # bad manifest / glob: nothing created
        print(f"error: {exc}", file=sys.stderr)
        return 2
    storage = storage_from_args(args)
    log = _log
    print(
        f"ingesting {len(plan.tasks)} volume(s) in {len(plan.collections)} collection(s) "
        f"into {args.out} ({args.backend}, {codec.name}:{codec.level}, {args.workers} "
        f"{'Dask' if args.scheduler else args.executor} worker(s))",
        file=sys.stderr,
    )
    from radiobject.ingest.layouts import incomplete_report

    for line in incomplete_report(plan, args.subjects):  # reported up front, before anything is written
        print(line, file=sys.stderr)
    common: dict[str, Any] = {
        "options": options,
        "storage": storage,
        "canonical": args.canonical,
        "validate_alignment": args.validate_alignment,
        "fail_fast": args.fail_fast,
        "progress": not args.no_progress,
        "on_changed": args.on_changed,
        "rehash": args.rehash,
        "log": log,
    }
    try:
        with stop_signals():
            if args.scheduler:
                from radiobject.ingest.dask import run_ingest_dask

                report = run_ingest_dask(args.out, plan, scheduler=args.scheduler, **common)
            else:
                report = run_ingest(args.out, plan, executor=args.executor, **common)
    except (ValueError, OSError, RadiObjectError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return interrupted_ingest(exc, args.out)
    print(report.summary_table())
    if args.philips_scaling:
        print(f"Philips DICOM scaling: {args.philips_scaling} (per volume: metadata philips_scaling)")
    if args.json:
        payload = report.to_dict()
        if dicom_options:  # the reader options every DICOM volume was read with
            payload["dicom_options"] = dicom_options
        write_report(args.json, payload)
    return 0 if report.ok else 1
