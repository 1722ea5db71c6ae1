"""A command that derives a new output from a store, and fails part-way, leaves nothing that looks
complete and never blocks a retry.

Each case makes a function the operation calls once per volume raise on its second call (an
``OSError``, or ``KeyboardInterrupt`` as Ctrl-C gives), then checks what is left on disk, that the
same call retried gives the full, correct result, and ``verify_store`` where the output is a store:
``resample_collection`` / ``radiobject resample`` (a new collection of the same store),
``to_radi_object`` (a new store), ``radiobject export`` (a folder of NIfTI files),
``export-nnunet`` and ``qc`` (already staged). What the call did not create is left as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from radiobject import ImageData, RadiObject, WriteOptions
from radiobject.cli._args import Terminated
from radiobject.cli.main import main
from radiobject.model import resample as resample_module
from radiobject.model.bulk import IngestItem
from radiobject.model.integrity import verify_store
from radiobject.model.labels import get_label_map, set_label_map
from radiobject.model.resample import resample_collection, resample_image
from radiobject.model.volume import Volume
from tests.model.helpers import image

IDS = ("s0", "s1", "s2")
SPACING = (2.0, 3.0, 2.0)
FAILURES = [
    pytest.param(lambda: OSError("the disk went away"), OSError, id="error"),
    pytest.param(KeyboardInterrupt, KeyboardInterrupt, id="ctrl-c"),
]


def _seg(seed: int) -> ImageData:
    data = (np.random.default_rng(50 + seed).random((12, 14, 10)) > 0.6).astype(np.uint8) * 2
    return ImageData(data, np.diag([1.0, 1.5, 2.0, 1.0]), {}, f"seg-{seed}")


@pytest.fixture
def store(tmp_path: Path, backend: str) -> str:
    """Three subjects: ``T1w`` (int16) and ``seg`` (a label collection with a label map)."""
    uri = str(tmp_path / "store")
    opts = WriteOptions(backend=backend, workers=1, commit_every=1)
    radi = RadiObject.from_images(
        uri,
        {"T1w": {k: image(i) for i, k in enumerate(IDS)}, "seg": {k: _seg(i) for i, k in enumerate(IDS)}},
        options=opts,
    )
    set_label_map(radi["seg"], "2=tumour")
    return uri


def _raise_on_second(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, make: Callable[[], BaseException]) -> None:
    """``owner.name`` raises ``make()`` on its second call (the first goes through)."""
    original = getattr(owner, name)
    calls = [0]

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise make()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


def _marker_collections(uri: str) -> list[str]:
    return list(json.loads((Path(uri) / "radiobject.json").read_text())["collections"])


def _assert_resampled(uri: str, name: str, out: str, order: int) -> None:
    """``out`` holds every volume of ``name`` resampled, voxel for voxel, and the store verifies."""
    radi = RadiObject(uri)
    assert out in radi.collection_names and out in _marker_collections(uri)
    dest, src = radi[out], radi[name]
    assert dest.obs_ids == src.obs_ids
    for k in src.obs_ids:
        vol = src.loc[k]
        want = resample_image(ImageData(vol.to_numpy(scaled=order > 0), vol.affine), SPACING, order=order)
        np.testing.assert_array_equal(dest.loc[k].to_numpy(), want.array)
        np.testing.assert_allclose(dest.loc[k].affine, want.affine)
    report = verify_store(uri)
    assert report.ok, report.findings


# --------------------------------------------------------------------------- resample
@pytest.mark.parametrize(("make", "error"), FAILURES)
def test_failed_resample_leaves_no_collection_and_retry_succeeds(
    store: str, monkeypatch: pytest.MonkeyPatch, make: Callable[[], BaseException], error: type[BaseException]
) -> None:
    _raise_on_second(monkeypatch, resample_module, "resample_image", make)
    opts = WriteOptions(workers=1, commit_every=1)  # the first volume is committed when the second fails
    with pytest.raises(error):
        resample_collection(RadiObject(store), "T1w", SPACING, out="T1w_low", options=opts)
    radi = RadiObject(store)
    assert radi.collection_names == ["T1w", "seg"] and _marker_collections(store) == ["T1w", "seg"]
    assert not (Path(store) / "collections" / "T1w_low").exists()
    assert verify_store(store).ok
    monkeypatch.undo()
    resample_collection(RadiObject(store), "T1w", SPACING, out="T1w_low", options=opts)
    _assert_resampled(store, "T1w", "T1w_low", order=1)


def test_resample_failing_after_the_volumes_removes_the_label_collection(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The class counts, written last, fail: the complete-looking label collection goes too."""

    def no_counts(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(resample_module, "record_class_counts", no_counts)
    with pytest.raises(KeyboardInterrupt):
        resample_collection(RadiObject(store), "seg", SPACING, out="seg_low")
    assert RadiObject(store).collection_names == ["T1w", "seg"]
    monkeypatch.undo()
    dest = resample_collection(RadiObject(store), "seg", SPACING, out="seg_low")
    _assert_resampled(store, "seg", "seg_low", order=0)
    lm = get_label_map(dest)
    assert lm is not None and lm.names == {2: "tumour"}
    assert dest.obs["class_counts"].notna().all()


def test_failed_resample_into_an_existing_collection_keeps_it(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A collection that was there before (e.g. left by a run killed outright) is never removed;
    the retry resumes it."""
    radi = RadiObject(store)
    first = resample_image(radi["T1w"].loc["s0"].to_image(), SPACING)
    radi.add_collection("T1w_low", [IngestItem("s0", "s0", ImageData(first.array, first.affine))])
    _raise_on_second(monkeypatch, resample_module, "resample_image", lambda: OSError("boom"))
    with pytest.raises(OSError, match="boom"):
        resample_collection(
            RadiObject(store), "T1w", SPACING, out="T1w_low", options=WriteOptions(workers=1, commit_every=1)
        )
    kept = RadiObject(store)["T1w_low"]
    assert kept.obs_ids == ["s0", "s1"]  # s0 was there (skipped), s1 committed before s2 failed
    np.testing.assert_array_equal(kept.loc["s0"].to_numpy(), first.array)
    monkeypatch.undo()
    resample_collection(RadiObject(store), "T1w", SPACING, out="T1w_low")
    _assert_resampled(store, "T1w", "T1w_low", order=1)


@pytest.mark.parametrize(("make", "code"), [(KeyboardInterrupt, 130), (lambda: Terminated("signal 15"), 143)])
def test_interrupted_resample_command(
    store: str, monkeypatch: pytest.MonkeyPatch, make: Callable[[], BaseException], code: int
) -> None:
    _raise_on_second(monkeypatch, resample_module, "resample_image", make)
    argv = ["resample", store, "T1w", "--spacing", "2,3,2", "--out", "T1w_low", "--no-progress"]
    assert main(argv) == code
    assert RadiObject(store).collection_names == ["T1w", "seg"]
    monkeypatch.undo()
    assert main(argv) == 0
    _assert_resampled(store, "T1w", "T1w_low", order=1)


# --------------------------------------------------------------------------- a view as a new store
@pytest.mark.parametrize(("make", "error"), FAILURES)
def test_failed_to_radi_object_leaves_nothing_and_retry_succeeds(
    store: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[], BaseException],
    error: type[BaseException],
) -> None:
    out = str(tmp_path / "train.radi")
    _raise_on_second(monkeypatch, Volume, "to_image", make)
    with pytest.raises(error):
        RadiObject(store).iloc[0:2].to_radi_object(out)
    assert not os.path.exists(out)
    monkeypatch.undo()
    RadiObject(store).iloc[0:2].to_radi_object(out)
    copy, src = RadiObject(out), RadiObject(store)
    assert copy.obs_subject_ids == ["s0", "s1"] and copy.collection_names == ["T1w", "seg"]
    for name in copy.collection_names:
        for k in ("s0", "s1"):
            np.testing.assert_array_equal(copy[name].loc[k].to_numpy(), src[name].loc[k].to_numpy())
    report = verify_store(out)
    assert report.ok, report.findings


# --------------------------------------------------------------------------- export, export-nnunet, qc
def _exported(out: Path) -> dict[str, list[str]]:
    return {d.name: sorted(p.name for p in d.iterdir()) for d in sorted(out.iterdir()) if d.is_dir()}


@pytest.mark.parametrize(("make", "code"), [(KeyboardInterrupt, 130), (lambda: Terminated("signal 15"), 143)])
def test_interrupted_export_removes_what_it_created(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[], BaseException], code: int
) -> None:
    out = tmp_path / "exp"
    _raise_on_second(monkeypatch, Volume, "to_nifti", make)
    assert main(["export", store, str(out)]) == code
    assert not out.exists()
    monkeypatch.undo()
    assert main(["export", store, str(out)]) == 0
    assert _exported(out) == {n: [f"{k}.nii.gz" for k in IDS] for n in ("T1w", "seg")}
    radi = RadiObject(store)
    for k in IDS:
        np.testing.assert_array_equal(
            np.asarray(nib.load(out / "T1w" / f"{k}.nii.gz").dataobj), radi.T1w.loc[k].to_numpy()
        )


def test_interrupted_export_into_an_existing_folder_keeps_what_was_there(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "exp"
    (out / "T1w").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "T1w" / "old.nii.gz").write_text("mine too")
    _raise_on_second(monkeypatch, Volume, "to_nifti", KeyboardInterrupt)
    assert main(["export", store, str(out), "--collections", "T1w"]) == 130
    assert sorted(os.listdir(out)) == ["T1w", "notes.txt"] and os.listdir(out / "T1w") == ["old.nii.gz"]


def test_failed_export_nnunet_leaves_nothing(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radiobject.ingest.layouts.msd import export_nnunet

    out = tmp_path / "Dataset001"
    _raise_on_second(monkeypatch, Volume, "to_nifti", KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        export_nnunet(RadiObject(store), out, channels=["T1w"], label="seg")
    assert os.listdir(tmp_path) == ["store"]  # neither the dataset nor its hidden stage
    monkeypatch.undo()
    export_nnunet(RadiObject(store), out, channels=["T1w"], label="seg")
    assert sorted(os.listdir(out / "imagesTr")) == [f"{k}_0000.nii.gz" for k in IDS]
    assert sorted(os.listdir(out / "labelsTr")) == [f"{k}.nii.gz" for k in IDS]


def test_failed_qc_keeps_the_earlier_image(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    png = tmp_path / "qc.png"
    png.write_bytes(b"the earlier montage")

    def interrupted(*args: Any, **kwargs: Any) -> None:
        Path(args[1]).write_bytes(b"half a png")  # part of the file is written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    assert main(["qc", store, "-o", str(png)]) == 130
    assert png.read_bytes() == b"the earlier montage" and sorted(os.listdir(tmp_path)) == ["qc.png", "store"]
    monkeypatch.undo()
    assert main(["qc", store, "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
