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
from typing import Any

import numpy as np

from radiobject.cli._args import human_bytes
from radiobject.cli.ingest import add_storage_arguments, storage_from_args

__all__ = ["register", "run_export", "run_info", "run_qc", "run_verify", "store_info"]


def register(subparsers: Any) -> None:
    """Adds ``info``, ``verify``, ``export`` and ``qc``."""
    p = subparsers.add_parser("info", help="subjects, collections, shapes, dtypes, sizes, codecs of a store")
    p.add_argument("uri", metavar="URI")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_storage_arguments(p)
    p.set_defaults(func=run_info)

    p = subparsers.add_parser("verify", help="read every volume and check the tables agree")
    p.add_argument("uri", metavar="URI")
    p.add_argument("--quick", action="store_true", help="open every volume and read one voxel, not all")
    add_storage_arguments(p)
    p.set_defaults(func=run_verify)

    p = subparsers.add_parser("export", help="write volumes back as NIfTI (affine and dtype kept)")
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
    p.add_argument("--max-subjects", type=int, default=8, help="first N subjects (default 8)")
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
    out: dict[str, Any] = {"uri": radi.uri, "backend": radi.backend_name, "subjects": len(radi.obs_subject_ids),
                           "obs_meta_columns": [c for c in radi.obs_meta.columns if c != "obs_subject_id"],
                           "collections": {}}
    for name in radi.collection_names:
        coll = radi[name]
        obs = coll.obs
        shapes = Counter(tuple(int(v) for v in s) for s in obs["shape"]) if len(obs) else Counter()
        dtypes = Counter(obs["dtype"]) if len(obs) else Counter()
        raw = sum(int(np.prod([int(v) for v in s])) * np.dtype(d).itemsize for s, d in zip(obs["shape"], obs["dtype"]))
        stored = _stored_bytes(coll.uri, radi.location.storage)
        out["collections"][name] = {
            "volumes": len(obs), "subjects": obs["obs_subject_id"].nunique() if len(obs) else 0,
            "shapes": {"x".join(map(str, k)): v for k, v in shapes.most_common()},
            "dtypes": dict(dtypes), "codecs": dict(Counter(obs["codec"])) if len(obs) else {},
            "orientations": dict(Counter(obs["orientation"])) if len(obs) else {},
            "raw_bytes": raw, "stored_bytes": stored,
            "ratio": round(raw / stored, 2) if stored else None,
        }
    return out


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
    print(f"{'collection':<16} {'volumes':>8} {'shape(s)':<22} {'dtype':<10} {'codec':<14} {'raw':>10} {'stored':>10} {'ratio':>6}")
    for name, c in info["collections"].items():
        shapes = ", ".join(list(c["shapes"])[:2]) + (" ..." if len(c["shapes"]) > 2 else "")
        stored = human_bytes(c["stored_bytes"]) if c["stored_bytes"] is not None else "?"
        print(f"{name:<16} {c['volumes']:>8} {shapes:<22} {','.join(c['dtypes']):<10} {','.join(c['codecs']):<14} "
              f"{human_bytes(c['raw_bytes']):>10} {stored:>10} {c['ratio'] or '':>6}")
    return 0


#: Entries of a ``volumes`` folder that are group metadata (Zarr / TileDB), not volumes.
_GROUP_FILES = frozenset({"zarr.json", ".zgroup", ".zattrs"})


def verify_store(radi: Any, quick: bool = False) -> list[str]:
    """Problems found: unreadable volumes, shape / dtype disagreeing with ``obs``, subjects in a
    collection but not in ``obs_meta``, duplicate IDs. Unreferenced arrays (left by an interrupted
    ingest, invisible to readers) are listed as notes, prefixed ``note:``."""
    from radiobject.storage import files

    problems: list[str] = []
    meta = radi.obs_meta
    if meta["obs_subject_id"].duplicated().any():
        problems.append("obs_meta: duplicate subject IDs")
    subjects = set(meta["obs_subject_id"])
    for name in radi.collection_names:
        coll = radi[name]
        obs = coll.obs
        if obs["obs_id"].duplicated().any():
            problems.append(f"{name}: duplicate obs_id in obs")
        orphans = set(obs["obs_subject_id"]) - subjects
        if orphans:
            problems.append(f"{name}: {len(orphans)} subject(s) not in obs_meta, e.g. {min(orphans)!r}")
        on_disk = {n for n in files.listdir(files.join(coll.uri, "volumes"), radi.location.storage)
                   if n not in _GROUP_FILES and not n.startswith("__")}
        temps = {n for n in on_disk if ".tmp-" in n}
        if temps:
            problems.append(f"note: {name}: {len(temps)} temporary file(s) left by an interrupted write, "
                            f"e.g. {min(temps)!r}")
        extra = on_disk - temps - set(obs["obs_id"])
        if extra:
            problems.append(f"note: {name}: {len(extra)} unreferenced array(s) (interrupted ingest; re-run it), "
                            f"e.g. {min(extra)!r}")
        for row in obs.to_dict("records"):
            oid = row["obs_id"]
            try:
                vol = coll.volume(oid)
                from radiobject.model.volume import Volume

                fresh = Volume(vol.uri, storage=radi.location.storage)  # from the array's own attributes
                if tuple(fresh.shape) != tuple(int(s) for s in row["shape"]) or str(fresh.dtype) != row["dtype"]:
                    problems.append(f"{name}/{oid}: array is {fresh.shape} {fresh.dtype}, obs says "
                                    f"{tuple(row['shape'])} {row['dtype']}")
                    continue
                if not np.allclose(fresh.affine.ravel(), np.asarray(row["affine"], dtype=float)):
                    problems.append(f"{name}/{oid}: affine in the array differs from obs")
                data = fresh.read((0,) * fresh.ndim) if quick else fresh.to_numpy()
                if not quick and data.dtype.kind == "f" and not np.isfinite(data).all():
                    problems.append(f"note: {name}/{oid}: contains NaN / inf")
            except Exception as exc:  # noqa: BLE001 - reported per volume
                problems.append(f"{name}/{oid}: unreadable ({type(exc).__name__}: {exc})")
    return problems


def run_verify(args: argparse.Namespace) -> int:
    """Reads every volume; prints problems; 1 when any (notes alone do not fail)."""
    try:
        radi = _open(args)
    except Exception as exc:  # noqa: BLE001
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = verify_store(radi, quick=args.quick)
    n = sum(len(radi[c]) for c in radi.collection_names)
    errors = [p for p in problems if not p.startswith("note:")]
    for p in problems:
        print(p)
    print(f"verified {n} volume(s) in {len(radi.collection_names)} collection(s): "
          f"{'OK' if not errors else f'{len(errors)} problem(s)'}")
    return 1 if errors else 0


def run_export(args: argparse.Namespace) -> int:
    """Writes OUT/<collection>/<obs_id>.nii[.gz] for the selected volumes."""
    try:
        radi = _open(args)
        if args.subjects:
            radi = radi.select(args.subjects)
        names = args.collections or radi.collection_names
        missing = [n for n in names if n not in radi.collection_names]
        if missing:
            raise ValueError(f"no collection(s) {missing} in {args.uri}")
    except Exception as exc:  # noqa: BLE001
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ext = ".nii" if args.uncompressed else ".nii.gz"
    written = failed = 0
    for name in names:
        os.makedirs(os.path.join(args.out, name), exist_ok=True)
        for vol in radi[name]:
            path = os.path.join(args.out, name, f"{vol.obs_id}{ext}")
            try:
                vol.to_nifti(path)
                written += 1
            except Exception as exc:  # noqa: BLE001 - reported per volume
                failed += 1
                print(f"{name}/{vol.obs_id}: {exc}", file=sys.stderr)
    print(f"exported {written} volume(s) to {args.out}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _is_label(obs: Any) -> bool:
    return len(obs) > 0 and all(str(d) in ("uint8", "int8", "uint16", "bool") for d in obs["dtype"])


def _window(img: np.ndarray) -> tuple[float, float]:
    fg = img[img != 0]
    if fg.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(fg, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1)


def run_qc(args: argparse.Namespace) -> int:
    """One row per subject; per image collection three mid-slices (axial, coronal, sagittal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        radi = _open(args)
        subjects = args.subjects or radi.obs_subject_ids[: args.max_subjects]
        radi = radi.select(subjects)
        label = args.label
        if label is None:
            label = next((n for n in radi.collection_names if _is_label(radi[n].obs)), None)
        if label is not None and label not in radi.collection_names:
            raise ValueError(f"no label collection {label!r} in {args.uri}")
        images = args.collections or [n for n in radi.collection_names if n != label]
        if not images or not subjects:
            raise ValueError("nothing to show (no image collection or no subject)")
    except Exception as exc:  # noqa: BLE001
        print(f"error: {exc}", file=sys.stderr)
        return 2
    planes = ("axial", "coronal", "sagittal")
    ncols, nrows = 3 * len(images), len(subjects)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.8 * ncols, 1.9 * nrows), squeeze=False)
    for r, sid in enumerate(subjects):
        lab = None
        if label is not None:
            hits = radi[label].obs
            if (hits["obs_subject_id"] == sid).any():
                lab = radi[label].by_subject(sid)
        for c, name in enumerate(images):
            obs = radi[name].obs
            vol = radi[name].by_subject(sid) if (obs["obs_subject_id"] == sid).any() else None
            for k, plane in enumerate(planes):
                ax = axes[r, 3 * c + k]
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{name} {plane}", fontsize=7)
                if k == 0 and 3 * c + k == 0:
                    ax.set_ylabel(sid, fontsize=7)
                if vol is None:
                    ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=7, transform=ax.transAxes)
                    continue
                i = vol.n_slices(plane) // 2
                img = vol.plane(plane, i).astype(np.float32)
                img = img.reshape(img.shape[:2] + (-1,))[..., 0] if img.ndim > 2 else img
                lo, hi = _window(img)
                ax.imshow(img.T, cmap="gray", origin="lower", vmin=lo, vmax=hi, interpolation="nearest")
                if lab is not None and tuple(lab.shape[:3]) == tuple(vol.shape[:3]):
                    seg = lab.plane(plane, i)
                    seg = seg.reshape(seg.shape[:2] + (-1,))[..., 0] if seg.ndim > 2 else seg
                    ax.imshow(np.ma.masked_equal(seg.T, 0), cmap="autumn", alpha=0.45, origin="lower",
                              interpolation="nearest")
    fig.suptitle(f"{args.uri}" + (f"  (overlay: {label})" if label else ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    plt.close(fig)
    print(f"wrote {args.output}: {nrows} subject(s) x {len(images)} collection(s) x 3 planes")
    return 0
