"""Patch reads of a Zarr volume on S3 (moto_server subprocess) fetch only what they need.

Counted with tensorstore's own S3 counters (``/tensorstore/kvstore/s3/read``, ``bytes_read``): a
patch's first read fetches at most the shard index plus the inner chunks it touches, never the
whole shard; a repeated read is served by the shipped chunk pool without any request (no
conditional GET per read to revalidate the shard index or the chunks).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tensorstore as ts

from radiobject import ImageData, RadiObject, StorageOptions, WriteOptions

pytestmark = pytest.mark.s3

SHAPE, CHUNK, PATCH, ORIGIN = (64, 64, 64), 16, 32, (8, 8, 8)


def _counters() -> tuple[int, int]:
    got = {
        m["name"].rsplit("/", 1)[-1]: m["values"][0].get("value", 0)
        for m in ts.experimental_collect_matching_metrics("/tensorstore/kvstore/s3/")
    }
    return int(got.get("read", 0)), int(got.get("bytes_read", 0))


def _shard(storage: StorageOptions, uri: str) -> bytes:
    import boto3

    bucket, _, prefix = uri.split("://", 1)[1].partition("/")
    client = boto3.client(
        "s3",
        endpoint_url=storage.endpoint_url,
        aws_access_key_id=storage.key,
        aws_secret_access_key=storage.secret,
        region_name=storage.region,
    )
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    (key,) = [k for k in keys if k.endswith("/c/0/0/0")]  # one shard: the whole volume
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_patch_read_fetches_index_and_touched_chunks_only(s3_server: StorageOptions, s3_prefix: str) -> None:
    data = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)  # incompressible: real chunk sizes
    uri = f"{s3_prefix}/store"
    RadiObject.from_images(
        uri,
        {"img": {"s0": ImageData(data, np.eye(4), {}, "synthetic")}},
        options=WriteOptions(backend="zarr", chunks=(CHUNK,) * 3),
        storage=s3_server,
    )
    vol = RadiObject(uri, storage=s3_server)["img"].volume("s0")
    shard = _shard(s3_server, uri)
    per = SHAPE[0] // CHUNK
    n = per**3
    index_bytes = n * 16 + 4  # (offset, nbytes) uint64 per inner chunk + crc32c
    entries = struct.unpack(f"<{2 * n}Q", shard[-index_bytes:-4])
    touched = [
        (i, j, k)
        for i in range(ORIGIN[0] // CHUNK, (ORIGIN[0] + PATCH - 1) // CHUNK + 1)
        for j in range(ORIGIN[1] // CHUNK, (ORIGIN[1] + PATCH - 1) // CHUNK + 1)
        for k in range(ORIGIN[2] // CHUNK, (ORIGIN[2] + PATCH - 1) // CHUNK + 1)
    ]
    needed = index_bytes + sum(entries[2 * ((i * per + j) * per + k) + 1] for i, j, k in touched)
    region = tuple(slice(o, o + PATCH) for o in ORIGIN)

    reads0, bytes0 = _counters()
    got = vol.read(region)
    reads1, bytes1 = _counters()
    assert np.array_equal(got, data[region])
    assert len(touched) == 27 and len(shard) > 2 * needed  # the test can tell a whole-shard fetch apart
    assert 0 < bytes1 - bytes0 <= needed, (bytes1 - bytes0, needed, len(shard))
    assert reads1 - reads0 <= len(touched) + 1  # at most one request per touched chunk, plus the index

    again = vol.read(region)
    reads2, bytes2 = _counters()
    assert np.array_equal(again, data[region])
    assert (reads2 - reads1, bytes2 - bytes1) == (0, 0)  # served by the chunk pool, nothing revalidated
