"""The per-item read deadline of bulk writes (``model.bulk.call_within``) and its setting."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from radiobject import ImageData, VolumeCollection, WriteOptions
from radiobject.errors import ImageReadError, SourceTimeoutError
from radiobject.model.bulk import IngestItem, call_within
from radiobject.model.options import DEFAULT_ITEM_TIMEOUT_S, default_item_timeout

pytestmark = pytest.mark.timeout(60)


def test_call_within_returns_raises_and_times_out() -> None:
    assert call_within(lambda: 7, 5.0, "/x") == 7
    assert call_within(lambda: 8, None, "/x") == 8
    with pytest.raises(KeyError):
        call_within(lambda: {}["k"], 5.0, "/x")
    gate = threading.Event()
    try:
        with pytest.raises(SourceTimeoutError) as exc:
            call_within(lambda: gate.wait(30), 0.2, "/data/a.nii.gz")
    finally:
        gate.set()
    err = exc.value
    assert isinstance(err, ImageReadError) and isinstance(err, TimeoutError)
    assert err.path == "/data/a.nii.gz" and err.limit_s == 0.2
    assert str(err).startswith("/data/a.nii.gz: reading did not finish within the item time limit of 0.2 s")


def test_setting_default_env_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RADIOBJECT_ITEM_TIMEOUT", raising=False)
    assert WriteOptions().item_timeout_s == DEFAULT_ITEM_TIMEOUT_S == 900.0
    monkeypatch.setenv("RADIOBJECT_ITEM_TIMEOUT", "12.5")
    assert WriteOptions().item_timeout_s == 12.5
    monkeypatch.setenv("RADIOBJECT_ITEM_TIMEOUT", "0")
    assert default_item_timeout() is None and WriteOptions().item_timeout_s is None
    assert WriteOptions(item_timeout_s=0).item_timeout_s is None
    assert WriteOptions(item_timeout_s=float("inf")).item_timeout_s is None
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="item timeout"):
            WriteOptions(item_timeout_s=bad)
    monkeypatch.setenv("RADIOBJECT_ITEM_TIMEOUT", "later")
    with pytest.raises(ValueError, match="RADIOBJECT_ITEM_TIMEOUT"):
        WriteOptions()


def test_collection_write_fails_only_the_stuck_item(tmp_path) -> None:
    """``VolumeCollection.write`` with user loaders: the stuck one fails typed, the others are stored."""
    gate = threading.Event()
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)

    def stuck() -> ImageData:
        gate.wait(30)
        return ImageData(arr, np.eye(4))

    items = [
        IngestItem("a", "a", lambda: ImageData(arr, np.eye(4)), source="/src/a.nii"),
        IngestItem("b", "b", stuck, source="/src/b.nii"),
        IngestItem("c", "c", ImageData(arr + 1, np.eye(4))),
    ]
    coll = VolumeCollection.create(str(tmp_path / "c"))
    try:
        report = coll.write(items, options=WriteOptions(item_timeout_s=0.5), on_error="collect")
    finally:
        gate.set()
    assert {r.obs_id: r.status for r in report.results} == {"a": "written", "b": "failed", "c": "written"}
    (failed,) = report.failed
    assert failed.error.startswith("SourceTimeoutError: /src/b.nii: reading did not finish") and "0.5 s" in failed.error
    assert sorted(VolumeCollection(str(tmp_path / "c")).obs_ids) == ["a", "c"]
    assert not (tmp_path / "c" / "volumes" / "b").exists()

    with pytest.raises(SourceTimeoutError, match="/src/b.nii"):  # on_error="raise": the typed error
        gate.clear()
        try:
            coll.write(items[1:2], options=WriteOptions(item_timeout_s=0.5))
        finally:
            gate.set()
