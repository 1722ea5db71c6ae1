"""The training loader over hostile stores: an incomplete subject and a damaged volume are typed
errors naming the subject, never a batch of zeros."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pandas as pd
import pytest

from radiobject import RadiObject
from radiobject.errors import RadiObjectError
from radiobject.ingest.sample import SampleCohort
from tests.hostile.conftest import run_cli

pytestmark = pytest.mark.timeout(120)
torch = pytest.importorskip("torch")


def _store(cohort: SampleCohort, tmp: Path, capsys: pytest.CaptureFixture[str], drop: tuple[str, str] | None) -> Path:
    df = pd.read_csv(cohort.manifest, dtype=str)
    df["path"] = [str((cohort.manifest.parent / p).resolve()) for p in df["path"]]
    if drop:
        df = df[~((df["subject_id"] == drop[0]) & (df["collection"] == drop[1]))]
    m = tmp / "m.csv"
    df.to_csv(m, index=False)
    out = tmp / "store"
    assert run_cli(capsys, "ingest", "--manifest", m, "--no-progress", out).rc == 0
    return out


def _loader(store: Path, **kw: object):  # type: ignore[no-untyped-def]
    from radiobject.ml import create_training_dataloader

    return create_training_dataloader(
        RadiObject(str(store)),
        modalities=["T1w", "FLAIR"],
        label="seg",
        patch_size=None,
        num_workers=0,
        batch_size=1,
        **kw,
    )


def test_incomplete_subject_is_an_error_or_skipped(
    cohort: SampleCohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _store(cohort, tmp_path, capsys, ("sub-02", "T1w"))
    with pytest.raises(RadiObjectError, match="sub-02"):
        list(_loader(store))
    batches = list(_loader(store, incomplete="skip"))
    assert len(batches) == 1  # sub-01 only, never a zero-filled T1w for sub-02


def test_damaged_volume_stops_the_loader_typed(
    cohort: SampleCohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _store(cohort, tmp_path, capsys, None)
    shard = sorted(glob.glob(str(store / "collections/T1w/volumes/sub-01/*/c/0/0/0")))[0]
    raw = bytearray(Path(shard).read_bytes())
    raw[40] ^= 0x55
    Path(shard).write_bytes(bytes(raw))
    with pytest.raises(RadiObjectError) as info:
        list(_loader(store))
    assert "sub-01" in str(info.value)
    os.remove(shard)
    with pytest.raises(RadiObjectError) as info:
        list(_loader(store))
    assert "sub-01" in str(info.value)
