"""The write and run options ``radiobject ingest`` and ``radiobject ingest-layout`` share (one definition).

DICOM reader options, backend and codec, chunks, commits, change handling, Dask, reports, progress,
the item time limit and the storage options: the same flags, defaults and help on both commands.
"""

from __future__ import annotations

import argparse

from radiobject.cli._args import add_item_timeout_argument, add_storage_arguments, positive_int
from radiobject.storage.base import CODECS, Codec
from radiobject.storage.registry import BACKEND_NAMES, DEFAULT_BACKEND

__all__ = ["add_write_arguments", "triple"]


def triple(value: str) -> tuple[int, ...]:
    """``X,Y,Z`` (or ``XxYxZ``) as three positive integers."""
    try:
        parts = tuple(int(v) for v in value.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z integers, got {value!r}") from None
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers X,Y,Z, got {value!r}")
    return parts


def add_write_arguments(p: argparse.ArgumentParser, *, alignment_help: str) -> None:
    """Adds the shared options to ``p`` (``alignment_help``: what ``--validate-alignment`` checks there)."""
    p.add_argument(
        "--philips-scaling",
        choices=("display", "precise"),
        default=None,
        help="Philips DICOM values: display (modality LUT, default) or precise floating-point "
        "scaling (dcm2niix -p y); recorded in each volume's metadata",
    )
    p.add_argument(
        "--resample-tilt",
        choices=("exact", "dcm2niix"),
        default=None,
        help="resample gantry-tilted CT like dcm2niix _Tilt / _Tilt_Eq (exact: origin from the "
        "DICOM geometry; dcm2niix: dcm2niix's origin); default: raw slices, sheared affine",
    )
    p.add_argument("--backend", choices=BACKEND_NAMES, default=DEFAULT_BACKEND, help=f"default {DEFAULT_BACKEND}")
    p.add_argument("--workers", type=positive_int, default=2, help="parallel writers (default 2)")
    p.add_argument(
        "--executor", choices=("thread", "process"), default="thread", help="local worker kind (default thread)"
    )
    p.add_argument(
        "--compression",
        choices=CODECS,
        default=Codec().name,  # the library's one default
        help=f"codec (default {Codec().name})",
    )
    p.add_argument("--level", type=int, default=None, help="codec level (default 5; zstd 3)")
    p.add_argument(
        "--lossy",
        nargs="+",
        default=None,
        metavar="[COLLECTION=]SPEC",
        help="precision reduction before the codec, per image collection: T1w=abs:2 (error bound "
        "in data units) or CT=bits:10 (float mantissa bits); a bare SPEC applies to every "
        "collection (label collections are refused)",
    )
    p.add_argument("--chunks", type=triple, default=None, metavar="X,Y,Z", help="chunk shape (default 32,32,32)")
    p.add_argument("--commit-every", type=positive_int, default=16, help="volumes per committed obs fragment")
    p.add_argument("--canonical", action="store_true", help="reorient every image to RAS+")
    p.add_argument(
        "--validate-alignment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=alignment_help,
    )
    p.add_argument("--fail-fast", action="store_true", help="stop at the first invalid or failing item")
    p.add_argument(
        "--on-changed",
        choices=("replace", "error", "skip"),
        default="replace",
        help="a stored volume whose source files changed since it was ingested: replace it "
        "(a new version, published atomically; default), fail it, or keep it",
    )
    p.add_argument(
        "--rehash",
        action="store_true",
        help="hash every stored volume's sources to find changes (default: only when size / mtime differ)",
    )
    p.add_argument("--json", metavar="REPORT", help="write the per-item report as JSON")
    p.add_argument("--scheduler", metavar="ADDR", help="run on a Dask cluster, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_item_timeout_argument(p)
    add_storage_arguments(p)
