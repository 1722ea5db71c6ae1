"""``radiobject info | verify | export | qc``: look at a store, check it, get NIfTI back, see it.

Exit codes: 0 success, 1 a problem found (``verify``) or an item failed (``export``), 2 the store
cannot be opened or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import ExitStack
from typing import Any

from radiobject.cli._args import (
    add_storage_arguments,
    human_bytes,
    interrupted,
    positive_int,
    stop_signals,
    storage_from_args,
)
from radiobject.cli._info import store_info
from radiobject.errors import RadiObjectError
from radiobject.ingest.target import refuse_inside_store
from radiobject.storage import files

__all__ = ["register", "run_export", "run_info", "run_qc", "run_verify", "store_info"]


def register(subparsers: Any) -> None:
    """Adds ``info``, ``verify``, ``export`` and ``qc``."""
    p = subparsers.add_parser("info", help="subjects, collections, shapes, dtypes, sizes, codecs of a store")
    p.add_argument("uri", metavar="URI")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_storage_arguments(p)
    p.set_defaults(func=run_info)

    p = subparsers.add_parser("verify", help="check every stored byte against its checksum; exit 1 on any finding")
    p.add_argument("uri", metavar="URI")
    p.add_argument(
        "--quick",
        action="store_true",
        help="check presence and sizes of every file (and the small metadata), decode nothing",
    )
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument(
        "--sources",
        action="store_true",
        help="also list volumes whose source files changed or vanished since ingest (hashes every source)",
    )
    add_storage_arguments(p)
    p.set_defaults(func=run_verify)

    p = subparsers.add_parser(
        "export", help="write volumes back as NIfTI (affine and dtype kept; .bval / .bvec beside DWI volumes)"
    )
    p.add_argument("uri", metavar="URI")
    p.add_argument("out", metavar="OUT", help="folder; files OUT/<collection>/<obs_id>.nii.gz")
    p.add_argument("--format", choices=("nifti",), default="nifti")
    p.add_argument("--collections", nargs="+", metavar="NAME", help="only these collections")
    p.add_argument("--subjects", nargs="+", metavar="ID", help="only these subjects")
    p.add_argument("--uncompressed", action="store_true", help="write .nii instead of .nii.gz")
    add_storage_arguments(p)
    p.set_defaults(func=run_export)

    p = subparsers.add_parser("qc", help="PNG montage of mid-slices (3 planes) per subject and collection")
    p.add_argument("uri", metavar="URI")
    p.add_argument("-o", "--output", default="qc.png", help="PNG file (default qc.png)")
    p.add_argument("--label", metavar="NAME", help="label collection drawn over the images (default: auto)")
    p.add_argument("--collections", nargs="+", metavar="NAME", help="image collections to show")
    p.add_argument("--subjects", nargs="+", metavar="ID", help="subjects to show")
    p.add_argument("--max-subjects", type=positive_int, default=8, help="first N subjects (default 8)")
    add_storage_arguments(p)
    p.set_defaults(func=run_qc)


def _open(args: argparse.Namespace) -> Any:
    from radiobject.model.radi_object import RadiObject

    return RadiObject(args.uri, storage=storage_from_args(args))


def _open_any(args: argparse.Namespace) -> Any:
    """The store at ``args.uri``, or the standalone collection there (``info``, ``verify``)."""
    from radiobject.model.opening import open_store_or_collection

    return open_store_or_collection(args.uri, storage_from_args(args))


def run_info(args: argparse.Namespace) -> int:
    """Prints the store summary (``--json`` for machine use)."""
    try:
        info = store_info(_open_any(args))
    except Exception as exc:  # noqa: BLE001 - any open failure is a usage error here
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    what = "a collection" if info["kind"] == "collection" else f"{len(info['collections'])} collections"
    print(f"{info['uri']}  ({info['backend']})  {info['subjects']} subjects, {what}")
    unreadable = {n: c["unreadable"] for n, c in info["collections"].items() if "unreadable" in c}
    info["collections"] = {n: c for n, c in info["collections"].items() if "unreadable" not in c}
    if info["obs_meta_columns"]:
        print(f"subject columns: {', '.join(info['obs_meta_columns'])}")
    print(
        f"{'collection':<16} {'volumes':>8} {'shape(s)':<22} {'dtype':<10} {'codec':<14} "
        f"{'raw':>10} {'stored':>10} {'ratio':>6}"
    )
    for name, c in info["collections"].items():
        shapes = ", ".join(list(c["shapes"])[:2]) + (" ..." if len(c["shapes"]) > 2 else "")
        stored = human_bytes(c["stored_bytes"]) if c["stored_bytes"] is not None else "?"
        print(
            f"{name:<16} {c['volumes']:>8} {shapes:<22} {','.join(c['dtypes']):<10} {','.join(c['codecs']):<14} "
            f"{human_bytes(c['raw_bytes']):>10} {stored:>10} {c['ratio'] or '':>6}"
        )
    for name, c in info["collections"].items():
        if c.get("lossy"):
            q = c["lossy"]
            psnr = (
                "lossless"
                if q["psnr_db_min"] is None
                else f"PSNR min {q['psnr_db_min']:.2f} dB (mean {q['psnr_db_mean']:.2f})"
            )
            ssim = "" if q["ssim_min"] is None else f", SSIM min {q['ssim_min']:.5f} (mean {q['ssim_mean']:.5f})"
            print(
                f"lossy {name}: {', '.join(q['settings'])} on {q['volumes']}/{c['volumes']} volume(s); "
                f"{psnr}{ssim}; max |error| {q['max_abs_error']:.4g}"
            )
    _print_geometry_and_labels(info)
    for name, reason in unreadable.items():
        print(f"{name}: cannot be read: {reason}")
    ingest = info.get("ingest") or {}
    if ingest.get("complete") is not True and ingest:
        failed = (ingest.get("counts") or {}).get("failed")
        why = ingest.get("unreadable") or (
            f"{failed} item(s) failed, or it was interrupted" if failed else "interrupted"
        )
        print(f"the last ingest did not complete ({why}): re-run it to resume; committed volumes are intact")
    return 0


def _print_geometry_and_labels(info: dict[str, Any]) -> None:
    for name, c in info["collections"].items():
        spacings = ", ".join(list(c.get("spacings", {}))[:3]) + (" ..." if len(c.get("spacings", {})) > 3 else "")
        chans = f", channels {', '.join(c['channel_names'])}" if c.get("channel_names") else ""
        print(f"  {name}: spacing {spacings or '-'} mm, orientation {', '.join(c['orientations']) or '-'}{chans}")
        if "label_values" in c:
            names = c["labels"]
            vals = ", ".join(f"{v}" + (f"={names[str(v)]}" if str(v) in names else "") for v in c["label_values"])
            print(f"  {name}: labels {vals or '(none recorded)'}")


def run_verify(args: argparse.Namespace) -> int:
    """Checks every stored byte (``radiobject.model.integrity.verify_store``); prints findings
    (or ``--json``); exit 1 on any error finding (notes alone do not fail), 2 when unopenable."""
    from radiobject.model.integrity import iter_lines, summary, verify_store

    try:
        storage = storage_from_args(args)
        radi = _open_any(args)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = verify_store(args.uri, storage, quick=args.quick, progress=sys.stderr.isatty() and not args.json)
    sources = []
    if getattr(args, "sources", False):  # source fingerprints (radiobject.ingest.changes)
        from radiobject.ingest.changes import verify_sources

        sources = verify_sources(radi)
    if args.json:
        doc = report.to_dict()
        if getattr(args, "sources", False):
            doc["sources"] = [
                {"collection": f.collection, "obs_id": f.obs_id, "obs_subject_id": f.obs_subject_id, "reason": f.reason}
                for f in sources
            ]
        print(json.dumps(doc, indent=1, default=str))
    else:
        for line in iter_lines(report):
            print(line)
        print(summary(report))
        if getattr(args, "sources", False):
            for f in sources:
                print(f"source changed: {f}")
            print(f"sources: {len(sources)} volume(s) whose source files changed or vanished")
    return 0 if report.ok and not sources else 1


def run_export(args: argparse.Namespace) -> int:
    """Writes OUT/<collection>/<obs_id>.nii[.gz] (and .bval / .bvec of DWI volumes); 1 when a
    volume failed (reported, the others written), 2 on a store error, 130 after Ctrl-C and 143
    after SIGTERM. A run that stops (store error, interrupt) removes the files and folders it
    created (``NewTarget``): no export that looks complete is left; files it replaced stay."""
    try:
        radi = _open(args)
        if args.subjects:
            radi = radi.select(args.subjects)
        names = args.collections or radi.collection_names
        missing = [n for n in names if n not in radi.collection_names]
        if missing:
            raise ValueError(f"no collection(s) {missing} in {args.uri}")
        if os.path.lexists(args.out) and not os.path.isdir(args.out):
            raise ValueError(f"{args.out}: the output exists and is not a folder")
        refuse_inside_store(args.out, "the export folder")
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ext = ".nii" if args.uncompressed else ".nii.gz"
    try:
        with stop_signals():
            written, failed = _export_volumes(radi, names, args.out, ext)
    except KeyboardInterrupt as exc:
        return interrupted(exc, "the files this run created were removed; re-run the command")
    except RadiObjectError as exc:
        print(f"error: {exc} (the files this run created were removed)", file=sys.stderr)
        return 2
    print(f"exported {written} volume(s) to {args.out}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _export_volumes(radi: Any, names: list[str], out: str, ext: str) -> tuple[int, int]:
    """Writes the volumes of ``names`` below ``out``: (written, failed). A volume that fails is
    reported and skipped; anything else that stops the run removes what it created, folder by folder."""
    from radiobject.formats.dicom.dwi import write_fsl_gradients
    from radiobject.model.collection_writes import NewTarget
    from radiobject.storage.options import StorageOptions

    written = failed = 0
    with ExitStack() as created:  # each folder's new entries go when the run stops; innermost first
        created.enter_context(NewTarget.before(out, StorageOptions()).removed_on_failure())
        os.makedirs(out, exist_ok=True)
        for name in names:
            # every output path stays inside OUT: plain names, no link below OUT; IDs checked on read
            folder = files.contained_path(out, name)
            created.enter_context(NewTarget.before(folder, StorageOptions()).removed_on_failure())
            os.makedirs(folder, exist_ok=True)
            for vol in list(radi[name]):
                try:
                    path = files.contained_path(out, name, f"{vol.obs_id}{ext}")
                    vol.to_nifti(path)
                    write_fsl_gradients(vol.metadata, path)  # .bval / .bvec of a DWI volume
                    written += 1
                except Exception as exc:  # noqa: BLE001 - reported per volume
                    failed += 1
                    print(f"{name}/{vol.obs_id}: {exc}", file=sys.stderr)
    return written, failed


def _is_label(obs: Any) -> bool:
    return len(obs) > 0 and all(str(d) in ("uint8", "int8", "uint16", "bool") for d in obs["dtype"])


def run_qc(args: argparse.Namespace) -> int:
    """One row per subject; per image collection three mid-slices (axial, coronal, sagittal)."""
    try:
        radi = _open(args)
        subjects = args.subjects or radi.obs_subject_ids[: args.max_subjects]
        radi = radi.select(subjects)
        label = args.label
        if label is None:
            from radiobject.model.labels import is_label_collection

            label = next((n for n in radi.collection_names if is_label_collection(radi[n])), None)
            label = label or next((n for n in radi.collection_names if _is_label(radi[n].obs)), None)
        if label is not None and label not in radi.collection_names:
            raise ValueError(f"no label collection {label!r} in {args.uri}")
        images = args.collections or [n for n in radi.collection_names if n != label]
        if not images or not subjects:
            raise ValueError("nothing to show (no image collection or no subject)")
        if not str(args.output).strip():
            raise ValueError("-o/--output is empty; give a PNG file name (e.g. qc.png)")
        refuse_inside_store(args.output, "the QC image")
        folder = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(folder):
            raise ValueError(f"{args.output}: the folder {folder} does not exist (create it first)")
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from radiobject.cli.qc import render_qc

    nrows, ncols = render_qc(radi, list(subjects), list(images), label, args.output, str(args.uri))
    extra = f" ({ncols // 3} channel columns)" if ncols // 3 != len(images) else ""
    print(f"wrote {args.output}: {nrows} subject(s) x {len(images)} collection(s) x 3 planes{extra}")
    return 0
