"""The local S3 server helper (``radiobject.bench.s3server``): starts, serves a bucket, stops."""

from __future__ import annotations

import socket

import pytest

from radiobject.bench.s3server import LocalS3, LocalS3Error, check_bucket_name, moto_server_command
from radiobject.errors import InvalidIdError, RadiObjectError, StoreError

pytestmark = pytest.mark.skipif(moto_server_command(0) is None, reason="moto_server not installed")


@pytest.mark.timeout(120)
def test_start_bucket_log_and_stop(tmp_path) -> None:
    import boto3

    log = tmp_path / "moto.log"
    with LocalS3(bucket="bkt", log=log) as s3:
        assert s3.url.startswith("http://127.0.0.1:") and s3.storage.endpoint_url == s3.url
        client = boto3.client(
            "s3", endpoint_url=s3.url, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
        )
        client.put_object(Bucket="bkt", Key="k", Body=b"v")
        assert client.get_object(Bucket="bkt", Key="k")["Body"].read() == b"v"
        assert s3.storage_options(timeout_s=3.0).timeout_s == 3.0
        port = s3.port
    assert s3.proc is None and b"GET /bkt/k" in log.read_bytes()  # the request log reached the file
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    s3.stop()  # twice is harmless


def test_a_server_that_cannot_listen_is_a_typed_error(monkeypatch) -> None:
    monkeypatch.setattr("radiobject.bench.s3server.moto_server_command", lambda port: ["false"])
    with pytest.raises(LocalS3Error, match="exited"):
        LocalS3(timeout_s=5).start()
    monkeypatch.setattr("radiobject.bench.s3server.moto_server_command", lambda port: None)
    with pytest.raises(LocalS3Error, match="not installed"):
        LocalS3().start()


@pytest.mark.parametrize(
    ("name", "why"),
    [("x", "1 character"), ("A" * 64, "64 character"), ("Bad_Name", "lowercase"), ("a..b", "'..'"), ("10.0.0.1", "IP")],
)
def test_an_invalid_bucket_name_is_refused_before_any_server(name: str, why: str) -> None:
    s3 = LocalS3(bucket=name)
    with pytest.raises(InvalidIdError, match=why) as info:
        s3.start()
    assert info.value.value == name and name in str(info.value)
    assert s3.proc is None  # nothing was started
    assert check_bucket_name("ok-bucket.1") == "ok-bucket.1"


@pytest.mark.timeout(60)
def test_a_bucket_the_server_refuses_is_a_typed_error_and_stops_the_server(monkeypatch) -> None:
    monkeypatch.setattr("radiobject.bench.s3server.check_bucket_name", lambda name: name)  # let moto judge it
    s3 = LocalS3(bucket="x")
    with pytest.raises(StoreError, match="s3://x.*InvalidBucketName") as info:  # was: a raw botocore ClientError
        s3.start()
    assert isinstance(info.value, RadiObjectError) and info.value.uri == "s3://x"
    assert s3.proc is None  # stopped, not orphaned


@pytest.mark.timeout(60)
def test_start_twice_is_refused() -> None:
    with LocalS3() as ok:
        with pytest.raises(LocalS3Error, match="already running"):
            ok.start()
