"""Versions on s3:// (moto_server), both backends: replace and delete publish atomically, garbage
collection removes only superseded versions, a reader's earlier handle keeps the old volume."""

from __future__ import annotations

import numpy as np
import pytest

from radiobject import RadiObject, StorageOptions, WriteOptions
from radiobject.errors import NotFoundError
from radiobject.storage import files
from tests.model.helpers import image


def test_replace_delete_gc_on_s3(s3_server: StorageOptions, s3_prefix: str, backend: str) -> None:
    uri = f"{s3_prefix}/r"
    imgs = {f"s{k}": image(k) for k in range(3)}
    RadiObject.from_images(uri, {"T1w": imgs}, options=WriteOptions(backend=backend), storage=s3_server)
    radi = RadiObject(uri, storage=s3_server)
    old = radi.T1w.loc["s1"]
    new = radi.T1w.replace("s1", image(50))
    assert new.uri != old.uri
    np.testing.assert_array_equal(old.to_numpy(), image(1).array)  # the earlier handle: whole old volume
    fresh = RadiObject(uri, storage=s3_server)
    np.testing.assert_array_equal(fresh.T1w.loc["s1"].to_numpy(), image(50).array)
    gone = fresh.T1w.loc["s2"].info.version
    fresh.T1w.delete("s2")
    again = RadiObject(uri, storage=s3_server)
    assert again.T1w.obs_ids == ["s0", "s1"]
    with pytest.raises(NotFoundError):
        again.T1w.loc["s2"]
    removed = again.T1w.collect_garbage(grace_seconds=0)
    assert sorted(removed) == [f"volumes/s1/{old.info.version}", f"volumes/s2/{gone}"]
    assert not files.exists(files.join(old.uri, "zarr.json" if backend == "zarr" else "__schema"), s3_server)
    again.T1w.compact()
    last = RadiObject(uri, storage=s3_server)
    np.testing.assert_array_equal(last.T1w.loc["s1"].to_numpy(), image(50).array)
    np.testing.assert_array_equal(last.T1w.loc["s0"].to_numpy(), image(0).array)
