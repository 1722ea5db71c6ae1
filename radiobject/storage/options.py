"""Where a store lives and how to reach it: local paths or ``s3://`` with explicit settings.

This module is the one owner of object-storage settings: credentials (explicit, or the standard
AWS environment variables), the endpoint, and the fault settings (``timeout_s``, ``retries``). Every
client — s3fs for table and JSON objects, TileDB, tensorstore — gets its configuration from the
translations here, so the three can never disagree on which key, token, region or timeout is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

#: Defaults for remote requests: a request that makes no progress for ``timeout_s`` fails, and is
#: tried ``retries`` more times with backoff before a typed error names the store and the object.
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3


@dataclass(frozen=True)
class StorageOptions:
    """How to reach object storage. Frozen and picklable: it travels into worker processes.

    Every credential field defaults from the standard AWS environment variables when left ``None``
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
    ``AWS_REGION`` / ``AWS_DEFAULT_REGION``), so the same code runs against AWS, MinIO or a local
    moto server.

    Attributes:
        endpoint_url: e.g. ``"http://127.0.0.1:5000"`` for a local S3 server; ``None`` = AWS.
        key / secret: credentials; ``None`` = the environment / the default credential chain.
        region: bucket region.
        anon: unsigned requests (public buckets).
        timeout_s: seconds a remote connection or request may make no progress before it fails.
        retries: how many times a failed remote request is retried (with backoff) before the
            operation raises a typed error naming the store and the object.
        extra: further ``(name, value)`` pairs; ``("session_token", ...)`` is understood.
    """

    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    region: str | None = None
    anon: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    extra: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"StorageOptions.timeout_s must be > 0, got {self.timeout_s!r}")
        if self.retries < 0:
            raise ValueError(f"StorageOptions.retries must be >= 0, got {self.retries!r}")

    def resolved(self) -> StorageOptions:
        """A copy with ``None`` fields filled from the environment."""
        env = os.environ
        return replace(
            self,
            endpoint_url=self.endpoint_url or env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3"),
            key=self.key or env.get("AWS_ACCESS_KEY_ID"),
            secret=self.secret or env.get("AWS_SECRET_ACCESS_KEY"),
            region=self.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        )

    @property
    def session_token(self) -> str | None:
        """An explicit ``("session_token", ...)`` extra, else ``AWS_SESSION_TOKEN`` when the key
        itself came from the environment (a token belongs to the key it was issued with)."""
        token = dict(self.extra).get("session_token")
        if token is None and self.key and self.key == os.environ.get("AWS_ACCESS_KEY_ID"):
            token = os.environ.get("AWS_SESSION_TOKEN")
        return token

    # --- translations: the only places that turn these settings into a client's configuration ---

    def s3fs_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem``."""
        s = self.resolved()
        client_kwargs: dict[str, Any] = {"region_name": s.region}
        if s.endpoint_url:
            client_kwargs["endpoint_url"] = s.endpoint_url
        return {
            "key": s.key,
            "secret": s.secret,
            "token": s.session_token,
            "anon": s.anon,
            "client_kwargs": client_kwargs,
            "use_listings_cache": False,
            "config_kwargs": {
                "connect_timeout": s.timeout_s,
                "read_timeout": s.timeout_s,
                "retries": {"max_attempts": s.retries + 1, "mode": "standard"},
            },
        }

    def tiledb_config(self) -> dict[str, str]:
        """TileDB ``vfs.s3.*`` configuration entries."""
        s = self.resolved()
        timeout_ms = str(int(s.timeout_s * 1000))
        cfg: dict[str, str] = {
            "vfs.s3.connect_timeout_ms": timeout_ms,
            "vfs.s3.request_timeout_ms": timeout_ms,
            "vfs.s3.connect_max_tries": str(s.retries + 1),
            "vfs.s3.connect_scale_factor": "25",
        }
        if s.endpoint_url:
            scheme, host = s.endpoint_url.split("://", 1) if "://" in s.endpoint_url else ("https", s.endpoint_url)
            cfg.update(
                {"vfs.s3.endpoint_override": host, "vfs.s3.scheme": scheme, "vfs.s3.use_virtual_addressing": "false"}
            )
        if s.region:
            cfg["vfs.s3.region"] = s.region
        if s.key and s.secret:
            cfg.update({"vfs.s3.aws_access_key_id": s.key, "vfs.s3.aws_secret_access_key": s.secret})
            if s.session_token:
                cfg["vfs.s3.aws_session_token"] = s.session_token
        if s.anon:
            cfg["vfs.s3.no_sign_request"] = "true"
        return cfg

    def tensorstore_s3_spec(self, bucket: str, path: str) -> dict[str, Any]:
        """A tensorstore ``s3`` key-value store spec for ``s3://bucket/path``.

        tensorstore has no per-request timeout option; its libcurl low-speed watchdog is set from
        ``timeout_s`` through the environment (``TENSORSTORE_CURL_LOW_SPEED_*``, unless the user set
        them) by :func:`apply_tensorstore_timeouts`, and retries go into the spec's context.
        """
        s = self.resolved()
        spec: dict[str, Any] = {
            "driver": "s3",
            "bucket": bucket,
            "path": path,
            "aws_region": s.region,
            "context": {"s3_request_retries": {"max_retries": s.retries, "initial_delay": "0.2s", "max_delay": "5s"}},
        }
        if s.endpoint_url:
            spec["endpoint"] = s.endpoint_url
            spec["host_header"] = s.endpoint_url.split("://", 1)[-1]
        if s.anon:
            spec["aws_credentials"] = {"type": "anonymous"}
        elif s.key and s.secret:
            from radiobject.storage._credentials import profile_files

            creds, config = profile_files(s.key, s.secret, s.session_token, s.region, os.getpid())
            spec["aws_credentials"] = {
                "type": "profile",
                "profile": "radiobject",
                "credentials_file": creds,
                "config_file": config,
            }
        else:
            spec["aws_credentials"] = {"type": "default"}  # environment, ~/.aws, then instance metadata
        apply_tensorstore_timeouts(s.timeout_s)
        return spec


def apply_tensorstore_timeouts(timeout_s: float) -> None:
    """Make tensorstore's HTTP transfers fail after ``timeout_s`` without progress (set once per
    process, before its first remote request; a value the user exported is kept)."""
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_TIME_SECONDS", str(max(1, int(timeout_s))))
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_LIMIT_BYTES", "1")


def as_location(uri: str | os.PathLike[str]) -> str:
    """A store location as the ``str`` every layer uses: a path (``str`` or ``os.PathLike``, e.g.
    ``pathlib.Path``) or a URI (``s3://bucket/key``, ``file:///a/b``).

    Raises:
        TypeError: ``uri`` is neither (bytes, numbers, ``None``...).
    """
    if isinstance(uri, str):
        return uri
    if isinstance(uri, os.PathLike):
        out = os.fspath(uri)
        if isinstance(out, str):
            return out
    raise TypeError(
        f"a store location is a str path, a pathlib.Path or an s3:// URI, not {type(uri).__name__}: {uri!r}"
    )


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for object-store URIs (``s3://...``)."""
    uri = as_location(uri)
    return "://" in uri and not uri.startswith("file://")


def strip_file_scheme(uri: str | os.PathLike[str]) -> str:
    """``file:///a/b`` -> ``/a/b``; other URIs unchanged."""
    uri = as_location(uri)
    return uri[len("file://") :] if uri.startswith("file://") else uri
