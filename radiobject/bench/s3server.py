"""A local S3 server for benchmarks and tests: ``moto_server`` in a subprocess on 127.0.0.1.

TileDB's S3 client needs the server in a separate process (an in-process threaded server times
out), so every S3 benchmark and the S3 tests start one this way: a free loopback port, a bounded
wait until it listens, an optional bucket, and a kill at the end (``with LocalS3(...) as s3:``).
Only 127.0.0.1 is used; nothing here reaches a network.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from radiobject.errors import InvalidIdError, StoreError
from radiobject.storage.options import StorageOptions

__all__ = ["LocalS3", "LocalS3Error", "check_bucket_name", "free_port", "moto_server_command"]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class LocalS3Error(RuntimeError):
    """``moto_server`` is not installed, exited, or did not listen in time."""


def check_bucket_name(bucket: str) -> str:
    """``bucket`` when it is a valid S3 bucket name (3-63 characters: lowercase letters, digits,
    ``.`` and ``-``, a letter or digit first and last, no ``..``, not an IP address); else an
    ``InvalidIdError`` naming it and the rule it breaks."""
    if not _BUCKET.match(bucket):
        reason = (
            f"{len(bucket)} character(s) (S3 bucket names have 3 to 63)"
            if not 3 <= len(bucket) <= 63
            else "S3 bucket names hold lowercase letters, digits, '.' and '-', and start and end with a letter or digit"
        )
        raise InvalidIdError("S3 bucket name", bucket, reason)
    if ".." in bucket or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket):
        raise InvalidIdError("S3 bucket name", bucket, "S3 bucket names hold no '..' and are not IP addresses")
    return bucket


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def moto_server_command(port: int) -> list[str] | None:
    """The command line of ``moto_server`` on ``127.0.0.1:port`` (``None``: not installed;
    ``pip install 'moto[server]'``). The one next to this interpreter is preferred."""
    exe = Path(sys.executable).with_name("moto_server")
    found = str(exe) if exe.exists() else shutil.which("moto_server")
    return None if found is None else [found, "-H", "127.0.0.1", "-p", str(port)]


class LocalS3:
    """``moto_server`` on ``port`` (default: a free one) of 127.0.0.1; a context manager.

    ``bucket`` is created once it listens; ``log`` receives the server's request log (default:
    discarded). ``storage`` gives ``StorageOptions`` for it (any key and secret are accepted);
    ``storage_options(**kw)`` adds settings such as ``timeout_s``. ``stop()`` kills the server
    (safe to call twice); ``start()`` may start it again on the same port.
    """

    def __init__(
        self,
        *,
        bucket: str | None = None,
        port: int | None = None,
        log: Path | None = None,
        timeout_s: float = 30.0,
        key: str = "testing",
        secret: str = "testing",
    ) -> None:
        self.bucket, self.log, self.timeout_s = bucket, log, float(timeout_s)
        self.port = free_port() if port is None else int(port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.key, self.secret = key, secret
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def storage_options(self, **kw: Any) -> StorageOptions:
        """``StorageOptions`` for this server, with extra settings ``kw`` (e.g. ``timeout_s``)."""
        return StorageOptions(
            endpoint_url=self.url,
            key=self.key,
            secret=self.secret,
            region="us-east-1",
            **kw,
        )

    @property
    def storage(self) -> StorageOptions:
        """``StorageOptions`` for this server (shipped timeouts and retries)."""
        return self.storage_options()

    def start(self) -> LocalS3:
        """Starts the server and waits (at most ``timeout_s``) until it listens; creates ``bucket``.

        Raises:
            InvalidIdError: ``bucket`` is not a valid S3 bucket name (before any server starts).
            StoreError: the server refused to create ``bucket`` (``s3://bucket``, its error code
                and message); the server is stopped.
            LocalS3Error: not installed, already running, exited, or did not listen in time.
        """
        if self.proc is not None:
            raise LocalS3Error(f"moto_server is already running on {self.url}")
        if self.bucket:
            check_bucket_name(self.bucket)
        cmd = moto_server_command(self.port)
        if cmd is None:
            raise LocalS3Error("moto_server is not installed (pip install 'moto[server]')")
        env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log is not None:
            self._log = out = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise LocalS3Error(f"moto_server exited with {code}" + (f" (log: {self.log})" if self.log else ""))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise LocalS3Error(
                        f"moto_server did not listen on {self.url} within {self.timeout_s:g} s"
                    ) from None
                time.sleep(0.05)
        if self.bucket:
            try:
                self._create_bucket(self.bucket)
            except BaseException:
                self.stop()  # never an orphaned server
                raise
        return self

    def _create_bucket(self, bucket: str) -> None:
        import boto3
        from botocore.exceptions import ClientError

        client = boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )
        try:
            client.create_bucket(Bucket=bucket)
        except ClientError as exc:  # a raw botocore error is no radiobject error: typed, named
            err = exc.response.get("Error", {})
            code, text = err.get("Code", "error"), err.get("Message", str(exc))
            raise StoreError(f"s3://{bucket}", f"{self.url} refused to create the bucket: {code}: {text}") from exc

    def stop(self) -> None:
        """Kills the server (if running) and closes its log."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
