"""``radiobject info | verify | export | qc``: look at a store, check it, get NIfTI back, see it.

Exit codes: 0 success, 1 a problem found (``verify``) or an item failed (``export``), 2 the store
cannot be opened or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from contextlib import ExitStack
from typing import Any

import numpy as np

from radiobject.cli._args import (
    add_storage_arguments,
    human_bytes,
    interrupted,
    positive_int,
    stop_signals,
    storage_from_args,
)
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


def _stored_bytes(uri: str, storage: Any) -> int | None:
    from radiobject.storage import files
    from radiobject.storage.options import is_remote, strip_file_scheme

    try:
        if is_remote(uri):
            return int(files.remote_fs(storage).du(uri.split("://", 1)[1]))
        total = 0
        for dirpath, _, names in os.walk(strip_file_scheme(uri)):
            total += sum(os.path.getsize(os.path.join(dirpath, n)) for n in names)
        return total
    except (OSError, ValueError):
        return None


def store_info(radi: Any) -> dict[str, Any]:
    """Summary of a store from its tables only (no pixel reads)."""
    out: dict[str, Any] = {
        "uri": radi.uri,
        "backend": radi.backend_name,
        "subjects": len(radi.obs_subject_ids),
        "obs_meta_columns": [c for c in radi.obs_meta.columns if c != "obs_subject_id"],
        "collections": {},
    }
    for name in radi.collection_names:
        coll = radi[name]
        obs = coll.obs
        shapes = Counter(tuple(int(v) for v in s) for s in obs["shape"]) if len(obs) else Counter()
        dtypes = Counter(obs["dtype"]) if len(obs) else Counter()
        raw = (
            sum(
                int(np.prod([int(v) for v in s])) * np.dtype(d).itemsize
                for s, d in zip(obs["shape"], obs["dtype"], strict=True)
            )
            if len(obs)
            else 0
        )
        stored = _stored_bytes(coll.uri, radi.location.storage)
        out["collections"][name] = {
            "volumes": len(obs),
            "subjects": obs["obs_subject_id"].nunique() if len(obs) else 0,
            "shapes": {"x".join(map(str, k)): v for k, v in shapes.most_common()},
            "dtypes": dict(dtypes),
            "codecs": dict(Counter(obs["codec"])) if len(obs) else {},
            "orientations": dict(Counter(obs["orientation"])) if len(obs) else {},
            "spacings": dict(Counter("x".join(f"{float(v):.3g}" for v in sp) for sp in obs["spacing"]))
            if len(obs)
            else {},
            **_label_info(coll),
            "raw_bytes": raw,
            "stored_bytes": stored,
            "ratio": round(raw / stored, 2) if stored else None,
        }
        lossy = lossy_summary(obs) if len(obs) else None
        if lossy:
            out["collections"][name]["lossy"] = lossy
    return out


def lossy_summary(obs: Any) -> dict[str, Any] | None:
    """Quality recorded at write by lossy storage (``metadata["lossy"]``), over a collection's
    volumes: settings, count, worst / mean PSNR and SSIM, largest error; ``None`` when lossless."""
    entries = []
    for text in obs["metadata"] if "metadata" in obs else []:
        meta = json.loads(text) if isinstance(text, str) and text else (text or {})
        if isinstance(meta, dict) and isinstance(meta.get("lossy"), dict):
            entries.append(meta["lossy"])
    if not entries:
        return None
    psnr = [e["psnr_db"] for e in entries if e.get("psnr_db") is not None]
    ssim = [e["ssim"] for e in entries if e.get("ssim") is not None]
    return {
        "volumes": len(entries),
        "settings": sorted({str(e.get("setting")) for e in entries}),
        "psnr_db_min": min(psnr) if psnr else None,
        "psnr_db_mean": round(sum(psnr) / len(psnr), 3) if psnr else None,
        "ssim_min": min(ssim) if ssim else None,
        "ssim_mean": round(sum(ssim) / len(ssim), 6) if ssim else None,
        "max_abs_error": max(float(e.get("max_abs_error") or 0.0) for e in entries),
    }


def _label_info(coll: Any) -> dict[str, Any]:
    """``channel_names`` when recorded (MSD / nnU-Net), and ``labels`` (value -> name) and
    ``label_values`` of a label collection."""
    from radiobject.model.labels import get_label_map, is_label_collection, label_values, read_collection_meta

    out: dict[str, Any] = {}
    channels = read_collection_meta(coll).get("channel_names")
    if channels:
        out["channel_names"] = list(channels)
    if not is_label_collection(coll):
        return out
    lm = get_label_map(coll)
    return {**out, "labels": {str(k): v for k, v in lm.names.items()} if lm else {}, "label_values": label_values(coll)}


def run_info(args: argparse.Namespace) -> int:
    """Prints the store summary (``--json`` for machine use)."""
    try:
        info = store_info(_open(args))
    except Exception as exc:  # noqa: BLE001 - any open failure is a usage error here
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    print(f"{info['uri']}  ({info['backend']})  {info['subjects']} subjects, {len(info['collections'])} collections")
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
        radi = _open(args)
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
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from radiobject.cli.qc import render_qc

    nrows, ncols = render_qc(radi, list(subjects), list(images), label, args.output, str(args.uri))
    extra = f" ({ncols // 3} channel columns)" if ncols // 3 != len(images) else ""
    print(f"wrote {args.output}: {nrows} subject(s) x {len(images)} collection(s) x 3 planes{extra}")
    return 0
