"""Helpers shared by the command modules: argument types, the ``--s3-*`` options, number formatting."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from radiobject._os import interrupts
from radiobject._os.interrupts import Interrupted
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


def regex(text: str) -> str:
    """An argparse type for a regular expression (``--subject-pattern``): compiled once here, so a
    typo is one usage error, not one failed item per file."""
    import re

    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a valid regular expression {text!r} ({exc})") from None
    return text


def check_report_path(path: str, out: str) -> None:
    """The ``--json`` report can be written: its folder exists, it is not a folder itself, and it
    lies outside every store but ``out``, the one ingested into. Checked before anything is
    ingested, so a bad report path never costs a finished ingest its report."""
    import os

    from radiobject.ingest.target import refuse_inside_store

    folder = os.path.dirname(os.path.abspath(path))
    if not path.strip():
        raise ValueError("--json is empty; give a file name for the report")
    if os.path.isdir(path):
        raise ValueError(f"--json {path}: is a folder; give a file name for the report")
    from radiobject.storage.options import is_remote, strip_file_scheme

    creates = not is_remote(out) and folder == os.path.abspath(strip_file_scheme(out))  # OUT/report.json
    if not os.path.isdir(folder) and not creates:
        raise ValueError(f"--json {path}: the folder {folder} does not exist (or is not a folder)")
    refuse_inside_store(path, "the --json report", allow=out)


def write_report(path: str, payload: Any) -> None:
    """Writes the JSON report under a temporary name, then renames it: complete or absent."""
    import json
    import os

    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=1, default=str)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def check_store_uri(uri: str) -> str:
    """``uri`` when it names a place for a store: a local path, ``file://`` path or
    ``scheme://bucket/...``; ``ValueError`` for an empty one or an object-store URI without a
    bucket (``s3://``, ``s3:///x``)."""
    if not uri.strip():
        raise ValueError("the store URI is empty")
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.lower() != "file" and (not rest or rest.startswith("/") or not rest.split("/", 1)[0]):
        raise ValueError(f"{uri}: no bucket named (expected {scheme}://BUCKET/PREFIX)")
    return uri


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


def lossy_arg(values: list[str] | None) -> Any:
    """``--lossy`` values -> ``WriteOptions.lossy`` (one ``Lossy`` or ``{collection: Lossy}``;
    ``None`` when not given)."""
    from radiobject.model.lossy import Lossy

    if not values:
        return None
    pairs = [v.split("=", 1) if "=" in v and ":" in v.split("=", 1)[1] else ["", v] for v in values]
    if len(pairs) == 1 and not pairs[0][0]:
        return Lossy.parse(pairs[0][1])
    if any(not name for name, _ in pairs):
        raise ValueError("--lossy: give COLLECTION=SPEC for each value when there are several")
    return {name: Lossy.parse(spec) for name, spec in pairs}


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


class Terminated(Interrupted):
    """SIGTERM, raised in the main thread like Ctrl-C so that a command stops the same way."""

    def __init__(self, message: str = "") -> None:
        super().__init__(signal.SIGTERM)


def _on_stop_signal(signum: int, frame: Any) -> None:
    interrupts.received(signum)  # honoured at the next item even if this exception is swallowed
    raise Terminated() if signum == signal.SIGTERM else Interrupted(signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """For the block, Ctrl-C (SIGINT) raises :class:`~radiobject._os.interrupts.Interrupted` and
    SIGTERM :class:`Terminated` (both ``KeyboardInterrupt``) in the main thread, and both are
    recorded so that bulk writes stop at their next item even when a library swallowed the
    exception (``radiobject._os.interrupts``); the previous handlers are restored after.
    Elsewhere than the main thread: nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_stop_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        interrupts.reset()


def interrupt_exit_code(exc: KeyboardInterrupt) -> int:
    """143 after SIGTERM, 130 after Ctrl-C (or any other ``KeyboardInterrupt``)."""
    return 143 if getattr(exc, "signum", signal.SIGINT) == signal.SIGTERM else 130


def interrupted(exc: KeyboardInterrupt, message: str) -> int:
    """Prints ``interrupted: <message>`` and returns the exit code: 143 after SIGTERM, 130 after
    Ctrl-C (or any other ``KeyboardInterrupt``)."""
    print(f"interrupted: {message}", file=sys.stderr)
    return interrupt_exit_code(exc)


def interrupted_ingest(exc: KeyboardInterrupt, out: str) -> int:
    """Says that the store ``out`` is consistent and how to resume (:func:`interrupted`)."""
    return interrupted(
        exc,
        f"{out} is consistent (committed volumes are complete, ingest.json says complete: false); "
        "re-run the same command to resume",
    )
