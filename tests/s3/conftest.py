"""A real S3 server for the tests: ``moto_server`` in a subprocess on 127.0.0.1 (a free port).

TileDB's S3 client needs a separate process (an in-process threaded server times out). The
server is started once per session, waited for (bounded), given a bucket, and killed at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from radiobject import StorageOptions

BUCKET = "radiobject-test"
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _moto_server_cmd(port: int) -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe), "-H", "127.0.0.1", "-p", str(port)]
    if shutil.which("moto_server"):
        return ["moto_server", "-H", "127.0.0.1", "-p", str(port)]
    pytest.skip("moto_server not installed (pip install 'moto[server]')")
    raise AssertionError


@pytest.fixture(scope="session")
def s3_server() -> Iterator[StorageOptions]:
    """StorageOptions for a fresh moto S3 server with bucket ``radiobject-test``."""
    port = _free_port()
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    proc = subprocess.Popen(_moto_server_cmd(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S} s")
                time.sleep(0.05)
        storage = StorageOptions(
            endpoint_url=f"http://127.0.0.1:{port}", key="testing", secret="testing", region="us-east-1"
        )
        import boto3

        boto3.client(
            "s3",
            endpoint_url=storage.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield storage
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def s3_prefix(s3_server: StorageOptions) -> str:
    """A fresh ``s3://`` prefix per test."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"
