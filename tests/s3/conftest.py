"""A real S3 server for the tests: ``moto_server`` in a subprocess on 127.0.0.1 (a free port).

TileDB's S3 client needs a separate process (an in-process threaded server times out). The
server is started once per session, waited for (bounded), given a bucket, and killed at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from radiobject import StorageOptions
from radiobject.bench.s3server import LocalS3, LocalS3Error, moto_server_command

BUCKET = "radiobject-test"
START_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def s3_server() -> Iterator[StorageOptions]:
    """StorageOptions for a fresh moto S3 server with bucket ``radiobject-test``."""
    if moto_server_command(0) is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    try:
        server = LocalS3(bucket=BUCKET, timeout_s=START_TIMEOUT_S).start()
    except LocalS3Error as exc:
        pytest.fail(str(exc))
    try:
        yield server.storage
    finally:
        server.stop()


@pytest.fixture
def s3_prefix(s3_server: StorageOptions) -> str:
    """A fresh ``s3://`` prefix per test."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"
