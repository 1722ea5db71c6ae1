"""BIDS with sessions ingested by the glob form users write, with participants.tsv (``n/a`` cells)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.scenarios._trees import make_bids


def _ingest(tmp_path: Path, table: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, Path]:
    from radiobject.cli.main import main

    root = tmp_path / "ds"
    store = tmp_path / "store"
    glob = f"T1w={root}/sub-*/ses-*/anat/sub-*_ses-*_T1w.nii.gz"
    assert main(["ingest", str(store), "--images", glob, "--subjects", str(table)]) == 0
    captured = capsys.readouterr()
    return captured.out + captured.err, store


def test_participants_rows_covered_by_their_sessions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """sub-01 of participants.tsv has images (its sessions): not reported as incomplete."""
    from radiobject import RadiObject

    make_bids(tmp_path / "ds")
    text, store = _ingest(tmp_path, tmp_path / "ds" / "participants.tsv", capsys)
    assert "incomplete" not in text, text
    meta = RadiObject(str(store)).obs_meta.set_index("obs_subject_id")
    assert sorted(meta.index) == sorted(f"sub-0{s}_ses-{x}" for s in "123" for x in ("pre", "post"))
    assert meta.loc["sub-01_ses-pre", "participant_id"] == "sub-01"
    assert meta.loc["sub-01_ses-pre", "age"] == 34 and pd.isna(meta.loc["sub-02_ses-post", "age"])  # n/a


def test_participants_row_without_images_still_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_bids(tmp_path / "ds")
    table = tmp_path / "p.tsv"
    table.write_text("participant_id\tage\nsub-01\t1\nsub-02\t2\nsub-03\t3\nsub-09\t9\n")
    text, _ = _ingest(tmp_path, table, capsys)
    assert "1 incomplete subject(s)" in text and "sub-09: no images" in text
    assert "sub-01: no" not in text


def test_from_niftis_joins_participants_on_sessions(tmp_path: Path) -> None:
    """``RadiObject.from_niftis`` with a session glob and participants.tsv joins like the CLI."""
    from radiobject import RadiObject

    root = make_bids(tmp_path / "ds")
    radi = RadiObject.from_niftis(
        str(tmp_path / "store"),
        images={"T1w": f"{root}/sub-*/ses-*/anat/sub-*_ses-*_T1w.nii.gz"},
        obs_meta=pd.read_csv(root / "participants.tsv", sep="\t"),
    )
    meta = radi.obs_meta.set_index("obs_subject_id")
    assert len(meta) == 6  # samples only, no image-less 'sub-01' rows
    assert meta.loc["sub-03_ses-post", "participant_id"] == "sub-03"
    assert meta.loc["sub-03_ses-post", "session_id"] == "ses-post"
    assert meta.loc["sub-03_ses-post", "age"] == 51 and pd.isna(meta.loc["sub-03_ses-pre", "sex"])
    assert pd.isna(meta.loc["sub-02_ses-pre", "age"])
