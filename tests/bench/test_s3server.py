"""The local S3 server helper (``radiobject.bench.s3server``): starts, serves a bucket, stops."""

from __future__ import annotations

import socket

import pytest

from radiobject.bench.s3server import LocalS3, LocalS3Error, moto_server_command

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


@pytest.mark.timeout(60)
def test_a_failed_bucket_stops_the_server_and_start_twice_is_refused() -> None:
    s3 = LocalS3(bucket="x")  # an invalid bucket name: create_bucket fails
    with pytest.raises(Exception, match="InvalidBucketName|not valid"):
        s3.start()
    assert s3.proc is None  # stopped, not orphaned
    with LocalS3() as ok:
        with pytest.raises(LocalS3Error, match="already running"):
            ok.start()
