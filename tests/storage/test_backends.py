"""The backend interface, the same assertions on both engines."""

from __future__ import annotations

import numpy as np
import pytest

from radiobject.errors import StoreNotFoundError
from radiobject.storage import ArraySpec, Codec, detect_backend, get_backend
from radiobject.storage.base import CODECS, default_chunks, default_shards, normalize_region


@pytest.mark.parametrize("codec", CODECS)
def test_codecs_round_trip(backend: str, tmp_path, codec: str) -> None:
    be = get_backend(backend)
    data = np.random.default_rng(0).normal(size=(40, 33, 20)).astype(np.float32)
    spec = ArraySpec(data.shape, "float32", (16, 16, 16), Codec(codec, 3))
    arr = be.create_array(str(tmp_path / "a"), spec, {"k": [1.5, "x"]})
    arr.write(tuple(slice(0, s) for s in data.shape), data)
    again = be.open_array(str(tmp_path / "a"))
    assert again.spec.shape == data.shape and again.spec.chunks == (16, 16, 16)
    assert again.spec.codec.name == codec
    assert again.attrs["k"] == [1.5, "x"]
    np.testing.assert_array_equal(again.read(tuple(slice(0, s) for s in data.shape)), data)


def test_region_write_and_read_into_buffer(backend: str, tmp_path) -> None:
    be = get_backend(backend)
    arr = be.create_array(str(tmp_path / "a"), ArraySpec((50, 40, 30), "int16", (16, 16, 16)), {})
    full = np.zeros((50, 40, 30), np.int16)
    block = np.arange(10 * 20 * 5, dtype=np.int16).reshape(10, 20, 5)
    region = (slice(7, 17), slice(3, 23), slice(20, 25))
    arr.write(region, block)
    full[region] = block
    out = np.empty((50, 40, 30), np.int16)
    assert arr.read(tuple(slice(0, s) for s in full.shape), out=out) is out
    np.testing.assert_array_equal(out, full)
    np.testing.assert_array_equal(be.open_array(str(tmp_path / "a")).read(region), block)


def test_detect_exists_delete(backend: str, tmp_path) -> None:
    be = get_backend(backend)
    uri = str(tmp_path / "a")
    assert not be.is_array(uri)
    be.create_array(uri, ArraySpec((4, 4), "uint8", (4, 4)), {})
    assert be.is_array(uri) and detect_backend(uri).name == backend
    be.delete_array(uri)
    assert not be.is_array(uri)
    with pytest.raises(StoreNotFoundError):
        be.open_array(uri)
    with pytest.raises(StoreNotFoundError):
        detect_backend(uri)


def test_groups(backend: str, tmp_path) -> None:
    be = get_backend(backend)
    be.create_group(str(tmp_path / "g"), {"kind": "test", "n": 3})
    be.create_array(str(tmp_path / "g" / "arr"), ArraySpec((4,), "uint8", (4,)), {})
    be.create_group(str(tmp_path / "g" / "sub"), {})
    assert be.group_attrs(str(tmp_path / "g")) == {"kind": "test", "n": 3}
    assert sorted(be.members(str(tmp_path / "g"))) == ["arr", "sub"]


def test_chunk_and_shard_defaults() -> None:
    assert default_chunks((240, 240, 155)) == (32, 32, 32)
    assert default_chunks((10, 300, 300, 4)) == (10, 32, 32, 1)
    shards = default_shards((512, 512, 300), (32, 32, 32))
    assert all(s % 32 == 0 for s in shards) and np.prod(shards) <= 1 << 27
    assert default_shards((240, 240, 155), (32, 32, 32)) == (256, 256, 160)


def test_normalize_region() -> None:
    region, squeeze = normalize_region((5, slice(None), Ellipsis), (10, 20, 30))
    assert region == (slice(5, 6), slice(0, 20), slice(0, 30)) and squeeze == (0,)
    assert normalize_region(-1, (10,))[0] == (slice(9, 10),)
    with pytest.raises(IndexError):
        normalize_region((slice(0, 10, 2),), (10,))
    with pytest.raises(IndexError):
        normalize_region((1, 2, 3, 4), (10, 20, 30))
    with pytest.raises(ValueError):
        Codec("lzma")
