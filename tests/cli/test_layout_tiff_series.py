"""``--tiff-series`` on the layout paths: ``radiobject ingest-layout KIND DIR --tiff-series N`` and
``radiobject ingest STORE --layout KIND DIR --tiff-series N`` read series N of TIFFs holding several
image series (an nnU-Net dataset whose ``file_ending`` is ``.tif``); without it such files fail and
no store is made; a negative series, or one where no TIFF is read (BIDS, ``--dicom-root``), exits 2
before anything is written, never accepted and then ignored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radiobject import RadiObject, Volume
from radiobject.cli.main import main
from tests.ingest._tiffs import SHAPE_1, nnunet_tiffs


def _commands(ds: Path, out: Path) -> dict[str, list[str]]:
    return {
        "ingest-layout": ["ingest-layout", "nnunet", str(ds), "-o", str(out), "--no-progress"],
        "ingest --layout": ["ingest", str(out), "--layout", "nnunet", str(ds), "--no-progress"],
    }


@pytest.mark.parametrize("command", ["ingest-layout", "ingest --layout"])
def test_a_layout_of_several_series_tiffs_needs_a_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    want = nnunet_tiffs(tmp_path / "ds")
    out = tmp_path / "s"
    args = _commands(tmp_path / "ds", out)[command]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 1
    assert "holds 2 image series" in capsys.readouterr().out and not out.exists()
    items = json.loads((tmp_path / "r.json").read_text())["items"]
    assert len(items) == 4 and {i["status"] for i in items} == {"failed"}
    assert main([*args, "--tiff-series", "1"]) == 0
    radi = RadiObject(str(out))
    for case, arrays in want.items():
        for coll, arr in zip(("img", "label"), arrays, strict=True):
            vol = radi[coll].loc[case]
            assert isinstance(vol, Volume) and vol.shape == SHAPE_1[::-1] and vol.metadata["series"] == 1
            np.testing.assert_array_equal(vol.to_numpy(), arr.T)


@pytest.mark.parametrize("command", ["ingest-layout", "ingest --layout"])
def test_a_negative_series_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    nnunet_tiffs(tmp_path / "ds")
    out = tmp_path / "s"
    assert main([*_commands(tmp_path / "ds", out)[command], "--tiff-series", "-1"]) == 2
    assert "error: --tiff-series must be >= 0, not -1" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("command", ["ingest-layout", "ingest --layout"])
def test_a_series_for_bids_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    import nibabel as nib

    root = tmp_path / "bids"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "toy", "BIDSVersion": "1.9.0"}))
    t1 = root / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), t1)
    out = tmp_path / "s"
    args = [a if a != "nnunet" else "bids" for a in _commands(root, out)[command]]
    assert main([*args, "--tiff-series", "0"]) == 2
    assert "error: --tiff-series does not apply to a BIDS dataset" in capsys.readouterr().err
    assert not out.exists()
    assert main(args) == 0  # the same dataset without the series


def test_a_series_with_a_dicom_root_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dicom" / "sub-01").mkdir(parents=True)
    out = tmp_path / "s"
    args = ["ingest", str(out), "--dicom-root", str(tmp_path / "dicom"), "--tiff-series", "0", "--no-progress"]
    assert main(args) == 2
    assert "error: --tiff-series does not apply to --dicom-root" in capsys.readouterr().err and not out.exists()
