"""Store comparison used by the ingest tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radiobject import RadiObject

#: ``obs`` columns that differ between two writes of the same volume by design (a random write token).
PER_WRITE_COLUMNS: tuple[str, ...] = ("version",)


def assert_same_store(a: str, b: str, *, ignore: tuple[str, ...] = PER_WRITE_COLUMNS) -> None:
    """Same subjects, obs_meta, collections, obs tables (row order included; per-write tokens
    ignored) and voxels / affines."""
    ra, rb = RadiObject(a), RadiObject(b)
    assert ra.collection_names == rb.collection_names
    pd.testing.assert_frame_equal(ra.obs_meta, rb.obs_meta)
    for name in ra.collection_names:
        oa = ra[name].obs.drop(columns=[c for c in ignore if c in ra[name].obs.columns])
        ob = rb[name].obs.drop(columns=[c for c in ignore if c in rb[name].obs.columns])
        pd.testing.assert_frame_equal(oa, ob)
        for oid in ra[name].obs_ids:
            va, vb = ra[name].volume(oid), rb[name].volume(oid)
            assert va.dtype == vb.dtype and np.array_equal(va.affine, vb.affine), f"{name}/{oid}"
            assert np.array_equal(va.to_numpy(), vb.to_numpy()), f"{name}/{oid}"
