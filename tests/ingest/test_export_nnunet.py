"""``export_nnunet`` (``radiobject.ingest.layouts.msd``): labels must be integer class values,
everything is checked before a file is written, and a failed export leaves no dataset behind."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject import RadiObject
from radiobject.cli.main import main
from radiobject.errors import LayoutError
from radiobject.formats.image import ImageData
from radiobject.ingest.layouts.msd import export_nnunet

SHAPE = (6, 5, 4)


def _store(path: Path, label_dtype: str, values: tuple[float, ...] = (0, 1, 2)) -> RadiObject:
    rng = np.random.default_rng(0)
    images: dict[str, dict[str, ImageData]] = {"T1": {}, "seg": {}}
    for i, s in enumerate(("case_a", "case_b", "case_c")):
        images["T1"][s] = ImageData(rng.normal(size=SHAPE).astype(np.float32), np.eye(4))
        seg = np.zeros(SHAPE, dtype=label_dtype)
        seg[: i + 1, 0, 0] = values[1 + i % (len(values) - 1)]
        seg[0, 1, 0] = values[-1]
        images["seg"][s] = ImageData(seg, np.eye(4))
    return RadiObject.from_images(str(path), images)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("values", [(0, 1, 2), (0, 0.5, 1.5)])
def test_a_float_label_is_refused_before_anything_is_written(tmp_path: Path, values: tuple[float, ...]) -> None:
    radi = _store(tmp_path / "store", "float32", values)
    out = tmp_path / "exports" / "Dataset001_X"
    with pytest.raises(LayoutError, match=r"label collection 'seg', subject 'case_a': dtype float32") as info:
        export_nnunet(radi, out, channels=["T1"], label="seg")
    assert "integer" in info.value.reason
    assert not out.exists() and not (tmp_path / "exports").exists()  # was: imagesTr, labelsTr and dataset.json


def test_the_cli_refuses_a_float_label_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store(tmp_path / "store", "float64")
    out = tmp_path / "nn"
    assert main(["export-nnunet", str(tmp_path / "store"), str(out), "--channels", "T1", "--label", "seg"]) == 2
    err = capsys.readouterr().err
    assert "'seg'" in err and "'case_a'" in err and "float64" in err and not out.exists()


def test_labels_of_the_written_cases_are_listed(tmp_path: Path) -> None:
    """``dataset.json``'s labels are the values the written labels hold (no class counts, no label
    map here: only ``background`` was listed)."""
    radi = _store(tmp_path / "store", "uint8", (0, 1, 2, 3))
    out = tmp_path / "empty"
    out.mkdir()  # an empty folder is fine
    export_nnunet(radi, out, channels=["T1"], label="seg")
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "label_1": 1, "label_2": 2, "label_3": 3} and ds["numTraining"] == 3
    got = np.asarray(nib.load(out / "labelsTr" / "case_b.nii.gz").dataobj)
    np.testing.assert_array_equal(got, radi.seg.loc["case_b"].to_numpy())
    assert sorted(p.name for p in (out / "imagesTr").iterdir())[0] == "case_a_0000.nii.gz"
    assert _leftovers(tmp_path) == []


def test_a_failed_export_leaves_no_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    radi = _store(tmp_path / "store", "int16")
    calls = {"n": 0}
    from radiobject.ingest.layouts import msd

    real = msd.write_nifti

    def failing(path: Path, *a: object, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second label file: a full disk, say
            raise OSError(28, "No space left on device")
        real(path, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(msd, "write_nifti", failing)
    out = tmp_path / "Dataset002_Y"
    with pytest.raises(OSError, match="No space left"):
        export_nnunet(radi, out, channels=["T1"], label="seg")
    assert not out.exists() and _leftovers(tmp_path) == []  # was: a half-written imagesTr / labelsTr


def test_a_folder_with_content_is_refused_and_kept(tmp_path: Path) -> None:
    radi = _store(tmp_path / "store", "uint8")
    out = tmp_path / "old"
    (out / "labelsTr").mkdir(parents=True)
    (out / "labelsTr" / "stale.nii.gz").write_bytes(b"x")
    with pytest.raises(LayoutError, match="not an empty folder"):
        export_nnunet(radi, out, channels=["T1"], label="seg")
    assert [p.name for p in out.rglob("*")] == ["labelsTr", "stale.nii.gz"]
