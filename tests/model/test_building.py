"""A store or collection being built is not opened as if whole; a killed builder's leftover is noticed
and a retry of the same constructor starts afresh (``radiobject.model.building``).

The builder is a real subprocess that blocks inside its constructor until told to go on, and is
then killed with SIGKILL, as the out-of-memory killer or a preempted job would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from radiobject import ImageData, IncompleteStoreError, RadiObject, StoreExistsError, VolumeCollection
from radiobject._os import owners
from radiobject.model.bulk import IngestItem

pytestmark = pytest.mark.timeout(120)

_BUILDER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from radiobject import ImageData, RadiObject, VolumeCollection
    from radiobject.model.bulk import IngestItem

    mode, uri, flags = sys.argv[1], sys.argv[2], sys.argv[3]

    def blocking():
        if mode == "store":  # the builder itself opens what it builds
            RadiObject(uri)
        elif mode == "standalone":
            VolumeCollection(uri)
        open(os.path.join(flags, "ready"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(flags, "go")) and time.monotonic() < deadline:
            time.sleep(0.02)
        return ImageData(np.ones((4, 4, 4), np.float32), np.eye(4))

    items = [IngestItem("a", "a", ImageData(np.zeros((4, 4, 4), np.float32), np.eye(4))),
             IngestItem("b", "b", blocking)]
    if mode == "store":
        RadiObject.from_items(uri, {"img": items})
    elif mode == "standalone":
        VolumeCollection.from_items(uri, items)
    else:
        radi = RadiObject(uri)
        with radi.creating_collection("derived"):
            radi.add_collection("derived", items)
    print("finished")
    """
)


def _start(tmp_path: Path, mode: str, uri: Path) -> tuple[subprocess.Popen, Path]:
    flags = tmp_path / f"flags-{mode}"
    flags.mkdir()
    script = tmp_path / "builder.py"
    script.write_text(_BUILDER)
    proc = subprocess.Popen([sys.executable, str(script), mode, str(uri), str(flags)], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (flags / "ready").exists():
        assert proc.poll() is None, "the builder ended early"
        assert time.monotonic() < deadline, "the builder did not get ready"
        time.sleep(0.02)
    return proc, flags


def _items() -> dict[str, list[IngestItem]]:
    return {
        "img": [IngestItem(s, s, ImageData(np.full((4, 4, 4), i, np.float32), np.eye(4))) for i, s in enumerate("ab")]
    }


@pytest.mark.parametrize("mode", ["store", "standalone"])
def test_a_store_being_built_and_a_killed_builders_leftover(tmp_path: Path, mode: str) -> None:
    """A store (``RadiObject.from_items``) or a standalone collection (``VolumeCollection.from_items``)."""
    if mode == "store":
        uri, what, marker = tmp_path / "store", "this store", "radiobject.json"
        opened, build = RadiObject, lambda u: RadiObject.from_items(u, _items())
    else:
        uri, what, marker = tmp_path / "coll", "this collection", "collection.json"
        opened, build = VolumeCollection, lambda u: VolumeCollection.from_items(u, _items()["img"])
    proc, _ = _start(tmp_path, mode, uri)
    try:
        with pytest.raises(IncompleteStoreError, match=rf"{what} is being built by process {proc.pid} .*has finished"):
            opened(str(uri))
        with pytest.raises(StoreExistsError, match=f"being built by process {proc.pid}"):
            build(str(uri))  # a running builder's leftover is never removed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    with pytest.raises(IncompleteStoreError, match="ended before it finished"):
        opened(str(uri))
    made = build(str(uri))  # the retry removes the leftover first
    coll = made.img if mode == "store" else made
    assert sorted(coll.obs_ids) == ["a", "b"]
    assert float(coll.loc["b"].to_numpy()[0, 0, 0]) == 1.0
    assert "building" not in (uri / marker).read_text()
    with pytest.raises(StoreExistsError):  # a finished one is never replaced
        build(str(uri))


def test_a_finished_build_opens_anywhere(tmp_path: Path) -> None:
    uri = tmp_path / "store"
    proc, flags = _start(tmp_path, "store", uri)
    (flags / "go").touch()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"finished" in out
    radi = RadiObject(str(uri))
    assert sorted(radi.img.obs_ids) == ["a", "b"]


def test_a_collection_being_built_and_a_killed_builders_leftover(tmp_path: Path) -> None:
    uri = tmp_path / "store"
    RadiObject.from_items(str(uri), _items())
    proc, _ = _start(tmp_path, "collection", uri)
    try:
        radi = RadiObject(str(uri))  # the store itself is whole
        assert sorted(radi.img.obs_ids) == ["a", "b"]
        with pytest.raises(IncompleteStoreError, match="collection 'derived' is being built"):
            radi["derived"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    with pytest.raises(IncompleteStoreError, match="ended before it finished"):
        RadiObject(str(uri))["derived"]
    radi = RadiObject(str(uri))
    with radi.creating_collection("derived") as created:  # the leftover is made afresh
        assert created
        radi.add_collection("derived", _items()["img"])
    assert sorted(RadiObject(str(uri))["derived"].obs_ids) == ["a", "b"]
    assert "building" not in (uri / "radiobject.json").read_text()


def test_owner_states() -> None:
    me = owners.this_process()
    assert owners.owner_state(me) == owners.ALIVE
    assert owners.owner_state(me, host=owners.this_host() + "-elsewhere") == owners.UNKNOWN
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    boot, ns, _, start = me.split()
    assert owners.owner_state(f"{boot} {ns} {child.pid} {start}") == owners.GONE  # pid gone (or another process)
    assert owners.owner_state(f"{boot} {ns} {os.getpid()} 1") == owners.GONE  # the pid now runs another process
    assert owners.owner_state(f"{boot} other-ns {os.getpid()} {start}") == owners.UNKNOWN
    assert owners.owner_state("not an identity") == owners.UNKNOWN
