"""Where a store lives and how to reach it: local paths or ``s3://`` with explicit settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StorageOptions:
    """How to reach object storage. Frozen and picklable: it travels into worker processes.

    Every field defaults from the standard AWS environment variables when left ``None``
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` /
    ``AWS_DEFAULT_REGION``), so the same code runs against AWS, MinIO or a local moto server.

    Attributes:
        endpoint_url: e.g. ``"http://127.0.0.1:5000"`` for a local S3 server; ``None`` = AWS.
        key / secret: credentials; ``None`` = the environment / the default credential chain.
        region: bucket region.
        anon: unsigned requests (public buckets).
    """

    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    region: str | None = None
    anon: bool = False
    extra: tuple[tuple[str, str], ...] = field(default=())

    def resolved(self) -> "StorageOptions":
        """A copy with ``None`` fields filled from the environment."""
        env = os.environ
        return StorageOptions(
            endpoint_url=self.endpoint_url or env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3"),
            key=self.key or env.get("AWS_ACCESS_KEY_ID"),
            secret=self.secret or env.get("AWS_SECRET_ACCESS_KEY"),
            region=self.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            anon=self.anon,
            extra=self.extra,
        )


def is_remote(uri: str) -> bool:
    """True for object-store URIs (``s3://...``)."""
    return "://" in uri and not uri.startswith("file://")


def strip_file_scheme(uri: str) -> str:
    """``file:///a/b`` -> ``/a/b``; other URIs unchanged."""
    return uri[len("file://") :] if uri.startswith("file://") else uri
