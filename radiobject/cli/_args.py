"""Helpers shared by the command modules: argument types, the ``--s3-*`` options, number formatting."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from radiobject.storage.options import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, StorageOptions


def int_in(lo: int, hi: int | None = None, what: str = "value") -> Callable[[str], int]:
    """An argparse type accepting integers in ``[lo, hi]`` (no upper bound when ``hi`` is None)."""

    def parse(text: str) -> int:
        n = int(text)
        if n < lo or (hi is not None and n > hi):
            bound = f"{lo}-{hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, got {n}")
        return n

    return parse


positive_int = int_in(1, what="count")


def item_timeout_seconds(text: str) -> float:
    """An argparse type for ``--item-timeout``: seconds >= 0 (0 = no limit)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds (0 = no limit), got {text!r}")
    return value


def add_item_timeout_argument(p: argparse.ArgumentParser) -> None:
    """Adds ``--item-timeout SECONDS`` (the ingest's per-item read deadline)."""
    p.add_argument(
        "--item-timeout",
        type=item_timeout_seconds,
        default=None,
        metavar="SECONDS",
        help="seconds one source may take to be read and decoded; past it that item fails "
        "(SourceTimeoutError naming the file) and the others go on (default $RADIOBJECT_ITEM_TIMEOUT, "
        "else 900; 0 = no limit)",
    )


def item_timeout_options(args: argparse.Namespace) -> dict[str, Any]:
    """``WriteOptions`` keywords for ``--item-timeout`` (none when it was not given: the default)."""
    value = getattr(args, "item_timeout", None)
    return {} if value is None else {"item_timeout_s": value or None}


def human_bytes(n: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def add_storage_arguments(p: argparse.ArgumentParser) -> None:
    """``--s3-*`` options; the credentials default to the matching ``AWS_*`` environment variables."""
    g = p.add_argument_group("S3 (defaults: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)")
    g.add_argument("--s3-endpoint", metavar="URL", help="S3-compatible endpoint, e.g. http://127.0.0.1:9000")
    g.add_argument("--s3-key", metavar="KEY", help="access key ID")
    g.add_argument("--s3-secret", metavar="SECRET", help="secret access key")
    g.add_argument("--s3-region", metavar="REGION", help="bucket region (default us-east-1)")
    g.add_argument("--s3-anon", action="store_true", help="unsigned requests (public buckets)")
    g.add_argument(
        "--s3-timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"a request that makes no progress for this long fails (default {DEFAULT_TIMEOUT_S:g})",
    )
    g.add_argument(
        "--s3-retries",
        metavar="N",
        type=int_in(0, what="retries"),
        default=DEFAULT_RETRIES,
        help=f"retries of a failed request before the command fails (default {DEFAULT_RETRIES})",
    )


def storage_from_args(args: argparse.Namespace) -> StorageOptions:
    """The ``StorageOptions`` given by ``--s3-*`` (``None`` fields resolve from the environment)."""
    timeout = getattr(args, "s3_timeout", DEFAULT_TIMEOUT_S)
    if not timeout > 0:
        raise argparse.ArgumentTypeError(f"--s3-timeout must be > 0, got {timeout}")
    return StorageOptions(
        endpoint_url=args.s3_endpoint,
        key=args.s3_key,
        secret=args.s3_secret,
        region=args.s3_region,
        anon=bool(args.s3_anon),
        timeout_s=timeout,
        retries=getattr(args, "s3_retries", DEFAULT_RETRIES),
    )
