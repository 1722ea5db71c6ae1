"""The S3 server stops mid-epoch under worker processes: a typed ``RemoteStorageError`` naming the
store and the object reaches the training loop in bounded time (never torch's bare
``RuntimeError``, never a hang)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from radiobject import RadiObject, WriteOptions
from radiobject.bench.s3server import LocalS3, moto_server_command
from radiobject.errors import RemoteStorageError
from radiobject.formats.image import ImageData
from tests.ml._stores import coded_volume

pytestmark = pytest.mark.timeout(120)
torch = pytest.importorskip("torch")

BOUND_S = 30.0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["processes", "threads"])
def test_server_stopped_mid_epoch_is_a_typed_remote_error(mode: str) -> None:
    from radiobject.ml import SampleError, create_training_dataloader

    if moto_server_command(0) is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    server = LocalS3(bucket="hostile-train", timeout_s=30).start()
    try:
        storage = server.storage_options(timeout_s=3, retries=1)
        uri = "s3://hostile-train/store"
        seg = np.zeros((20, 24, 16), np.uint8)
        seg[2:5, 2:5, 2:5] = 1
        images = {
            "T1w": {f"sub-{i}": ImageData(coded_volume(i, (20, 24, 16)), np.eye(4), {}, "x") for i in range(3)},
            "seg": {f"sub-{i}": ImageData(seg, np.eye(4), {}, "x") for i in range(3)},
        }
        RadiObject.from_images(uri, images, options=WriteOptions(backend="zarr", chunks=(8, 8, 8)), storage=storage)
        loader = create_training_dataloader(
            RadiObject(uri, storage=storage),
            modalities=["T1w"],
            label="seg",
            patch_size=(8, 8, 8),
            batch_size=1,
            patches_per_volume=20,
            num_workers=2,
            worker_mode=mode,
        )
        it = iter(loader)
        next(it)
    finally:
        server.stop()
    t0 = time.monotonic()
    with pytest.raises(RemoteStorageError) as info:
        for _ in it:
            pass
    assert time.monotonic() - t0 < BOUND_S
    assert isinstance(info.value, SampleError) and "s3://hostile-train/store" in str(info.value)
    assert "Traceback" not in str(info.value)
