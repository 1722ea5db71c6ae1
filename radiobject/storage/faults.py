"""Remote failures become one typed error: :class:`~radiobject.errors.RemoteStorageError`.

The clients radiobject uses for object storage fail in their own ways (botocore / aiohttp
exceptions from s3fs, ``ValueError`` with a CURL status from tensorstore, ``TileDBError`` with an
S3 status from TileDB). Their timeouts and retries are set from ``StorageOptions`` (see
:mod:`radiobject.storage.options`); once those are spent, :func:`remote_errors` turns what
escapes into an error that names the object and the cause, so a dead server ends an epoch or an
ingest with a clear message instead of a raw client traceback or a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from radiobject.errors import RadiObjectError, RemoteStorageError

# Substrings of client messages that mean "the remote end failed", not "your data is wrong".
_REMOTE_MARKERS = (
    "CURL error",
    "curl_code",
    "Could not connect",
    "Connection refused",
    "Connection reset",
    "Timeout was reached",
    "timed out",
    "Read timeout",
    "Connect timeout",
    "Operation too slow",
    "Failed to connect",
    "Couldn't connect",
    "Connection aborted",
    "Server disconnected",
    "Cannot connect to host",
    "Curl error",
    "S3 error",
    "Error code: 5",
    "ServiceUnavailable",
)


def remote_failure(exc: BaseException) -> str | None:
    """The cause, when ``exc`` is a remote-storage failure (connection, timeout, 5xx); else None."""
    if isinstance(exc, RadiObjectError):
        return None
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return f"{type(exc).__name__}: {exc}"
    module = type(exc).__module__ or ""
    if module.startswith(("botocore", "aiohttp", "urllib3")) and "NoSuchKey" not in type(exc).__name__:
        text = str(exc)
        if "404" in text or "Not Found" in text or "NoSuchKey" in text:
            return None
        return f"{type(exc).__name__}: {text}"
    text = str(exc)
    if any(marker in text for marker in _REMOTE_MARKERS):
        return text.strip().splitlines()[0][:500]
    return None


@contextmanager
def remote_errors(uri: str) -> Iterator[None]:
    """Re-raise remote-storage failures inside the block as :class:`RemoteStorageError` naming ``uri``."""
    try:
        yield
    except Exception as exc:
        cause = remote_failure(exc)
        if cause is None:
            raise
        raise RemoteStorageError(uri, f"object storage failed after the configured timeout / retries: {cause}") from exc
