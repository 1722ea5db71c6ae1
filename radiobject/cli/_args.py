"""Helpers shared by the command modules: argument types, the ``--s3-*`` options, number formatting."""

from __future__ import annotations

import argparse
from collections.abc import Callable

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
