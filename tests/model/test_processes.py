"""A store opened and read in a parent is read correctly in forked and spawned children."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from radiobject import RadiObject, WriteOptions
from tests.model.helpers import image


def _child_read(radi: RadiObject, sid: str, queue) -> None:  # runs in the child
    vol = radi.T1w.loc[sid]
    queue.put((sid, float(vol.to_numpy().astype(np.float64).sum()), vol[1:5, 2:6, 3:7].tolist()))


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_fork_spawn_forkserver(backend: str, tmp_path, method: str) -> None:
    imgs = {f"s{k}": image(k) for k in range(3)}
    RadiObject.from_images(str(tmp_path / "r"), {"T1w": imgs}, options=WriteOptions(backend=backend))
    radi = RadiObject(str(tmp_path / "r"))
    for sid in imgs:  # the parent holds open handles and threads before the children start
        radi.T1w.loc[sid].to_numpy()
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child_read, args=(radi, sid, queue)) for sid in imgs]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        sid, total, patch = queue.get(timeout=60)
        results[sid] = (total, patch)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    for sid, img in imgs.items():
        assert results[sid][0] == float(img.array.astype(np.float64).sum())
        assert results[sid][1] == img.array[1:5, 2:6, 3:7].tolist()
