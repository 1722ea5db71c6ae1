"""A failed constructor leaves nothing that looks complete and never blocks a retry.

``VolumeCollection.from_images`` / ``from_items`` / ``from_niftis`` and ``RadiObject.from_images``
/ ``from_items`` / ``from_files`` are all or nothing: when an item fails (an unstorable dtype, an
affine that is not finite, a loader that raises, an interrupt) what the call created is removed,
so the same call on the same path with good input succeeds and holds exactly the good volumes.
What the call did not create (an existing folder, store or collection) is left as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from radiobject import ImageData, RadiObject, VolumeCollection, WriteOptions
from radiobject.errors import GeometryError, StoreError, StoreExistsError
from radiobject.ingest import cohort
from radiobject.model.bulk import IngestItem
from radiobject.model.integrity import verify_store
from tests.model.helpers import image

IDS = ("s0", "s1", "s2")


def _good() -> dict[str, ImageData]:
    return {k: image(i) for i, k in enumerate(IDS)}


def _complex() -> ImageData:
    return ImageData(np.zeros((12, 14, 10), np.complex64), np.eye(4), {}, "complex-source")


def _nan_affine() -> ImageData:
    affine = np.diag([1.0, 1.5, 2.0, 1.0])
    affine[0, 3] = np.nan
    return ImageData(image(9).array, affine, {}, "nan-affine-source")


def _failing_loader() -> ImageData:
    raise OSError("the source vanished")


def _interrupting_loader() -> ImageData:
    raise KeyboardInterrupt


def _with(position: int, bad: ImageData) -> dict[str, ImageData]:
    images = _good()
    images[IDS[position]] = bad
    return images


#: (bad item position, bad image, error class): first, middle and last item.
BAD_ITEMS = [
    pytest.param(0, _complex, StoreError, id="first-complex"),
    pytest.param(1, _nan_affine, GeometryError, id="middle-nan-affine"),
    pytest.param(2, _complex, StoreError, id="last-complex"),
]


def _options(backend: str) -> WriteOptions:
    # one worker, one volume per commit: the items before the bad one are committed when it fails
    return WriteOptions(backend=backend, workers=1, commit_every=1)


def _assert_exactly_good(coll: VolumeCollection, *, one_version: bool = True) -> None:
    """The good volumes, voxel for voxel; ``one_version``: and no leftover array of a failed call."""
    good = _good()
    assert coll.obs_ids == list(IDS)
    for k in IDS:
        np.testing.assert_array_equal(coll.loc[k].to_numpy(), good[k].array)
    if one_version:
        arrays = {k: [v for v in os.listdir(Path(coll.uri) / "volumes" / k) if len(v) == 32] for k in IDS}
        assert all(len(v) == 1 for v in arrays.values()), arrays


def _assert_good_store(uri: str) -> None:
    radi = RadiObject(uri)
    assert radi.collection_names == ["T1w"]
    _assert_exactly_good(radi["T1w"])
    assert radi.obs_subject_ids == list(IDS)
    report = verify_store(uri)
    assert report.ok, report.findings


# --------------------------------------------------------------------------- collections
@pytest.mark.parametrize(("position", "bad", "error"), BAD_ITEMS)
def test_collection_from_images_failure_leaves_nothing_and_retry_succeeds(
    tmp_path: Path, backend: str, position: int, bad: Callable[[], ImageData], error: type[Exception]
) -> None:
    uri = tmp_path / "new" / "T1w"  # the call creates both folders
    with pytest.raises(error):
        VolumeCollection.from_images(uri, _with(position, bad()), options=_options(backend))
    assert not (tmp_path / "new").exists()
    coll = VolumeCollection.from_images(uri, _good(), options=_options(backend))
    _assert_exactly_good(coll)
    _assert_exactly_good(VolumeCollection(uri))


@pytest.mark.parametrize("position", [0, 1])
def test_collection_failing_loader_leaves_nothing(tmp_path: Path, backend: str, position: int) -> None:
    uri = tmp_path / "T1w"
    good = _good()
    items = [IngestItem(k, k, _failing_loader if i == position else good[k]) for i, k in enumerate(IDS)]
    with pytest.raises(OSError, match="vanished"):
        VolumeCollection.from_items(uri, items, options=_options(backend))
    assert not uri.exists()
    loaders = [IngestItem(k, k, (lambda k=k: good[k])) for k in IDS]
    _assert_exactly_good(VolumeCollection.from_items(uri, loaders, options=_options(backend)))


def test_interrupted_collection_leaves_nothing(tmp_path: Path, backend: str) -> None:
    uri = tmp_path / "T1w"
    good = _good()
    items = [IngestItem("s0", "s0", good["s0"]), IngestItem("s1", "s1", _interrupting_loader)]
    with pytest.raises(KeyboardInterrupt):
        VolumeCollection.from_items(uri, items, options=_options(backend))
    assert not uri.exists()
    _assert_exactly_good(VolumeCollection.from_images(uri, good, options=_options(backend)))


def test_existing_empty_folder_is_kept(tmp_path: Path, backend: str) -> None:
    """A folder the call did not create stays (emptied of what the call put there)."""
    uri = tmp_path / "T1w"
    uri.mkdir()
    with pytest.raises(StoreError):
        VolumeCollection.from_images(uri, _with(1, _complex()), options=_options(backend))
    assert uri.is_dir() and os.listdir(uri) == []
    _assert_exactly_good(VolumeCollection.from_images(uri, _good(), options=_options(backend)))


def test_existing_collection_is_never_removed(tmp_path: Path, backend: str) -> None:
    uri = tmp_path / "T1w"
    VolumeCollection.from_images(uri, _good(), options=_options(backend))
    with pytest.raises(StoreExistsError):
        VolumeCollection.from_images(uri, {"x": image(5)}, options=_options(backend))
    _assert_exactly_good(VolumeCollection(uri))


def test_collection_from_niftis_failure_leaves_nothing(tmp_path: Path, backend: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    good = _good()
    for k in IDS:
        nib.save(nib.Nifti1Image(good[k].array, good[k].affine), src / f"{k}.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((12, 14, 10), np.complex64), np.eye(4)), src / "s1.nii.gz")
    uri = tmp_path / "T1w"
    with pytest.raises(StoreError, match="complex"):
        VolumeCollection.from_niftis(uri, str(src / "*.nii.gz"), options=_options(backend))
    assert not uri.exists()
    nib.save(nib.Nifti1Image(good["s1"].array, good["s1"].affine), src / "s1.nii.gz")
    _assert_exactly_good(VolumeCollection.from_niftis(uri, str(src / "*.nii.gz"), options=_options(backend)))


# --------------------------------------------------------------------------- stores
@pytest.mark.parametrize(("position", "bad", "error"), BAD_ITEMS)
def test_store_from_images_failure_leaves_nothing_and_retry_succeeds(
    tmp_path: Path, backend: str, position: int, bad: Callable[[], ImageData], error: type[Exception]
) -> None:
    uri = str(tmp_path / "store")
    with pytest.raises(error):
        RadiObject.from_images(
            uri, {"T1w": _with(position, bad())}, validate_alignment=False, options=_options(backend)
        )
    assert not os.path.exists(uri)
    RadiObject.from_images(uri, {"T1w": _good()}, options=_options(backend))
    _assert_good_store(uri)


def test_store_failing_loader_in_second_collection_leaves_nothing(tmp_path: Path, backend: str) -> None:
    """The first collection is complete when the second one's loader fails: the store goes."""
    uri = str(tmp_path / "store")
    loaders: dict[str, ImageData | Callable[[], ImageData]] = {k: _failing_loader for k in IDS}
    with pytest.raises(OSError, match="vanished"):
        RadiObject.from_images(
            uri, {"T1w": _good(), "T2w": loaders}, validate_alignment=False, options=_options(backend)
        )
    assert not os.path.exists(uri)
    RadiObject.from_images(uri, {"T1w": _good()}, options=_options(backend))
    _assert_good_store(uri)


def _nifti_sources(tmp_path: Path, bad: str) -> Path:
    """``src/<id>/t1.nii.gz`` of the good images, the one of ``bad`` complex (unstorable)."""
    src, good = tmp_path / "src", _good()
    for k in IDS:
        (src / k).mkdir(parents=True)
        nib.save(nib.Nifti1Image(good[k].array, good[k].affine), src / k / "t1.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((12, 14, 10), np.complex64), good[bad].affine), src / bad / "t1.nii.gz")
    return src


def test_store_from_files_failure_leaves_nothing(tmp_path: Path, backend: str) -> None:
    src, good = _nifti_sources(tmp_path, bad="s2"), _good()
    uri = str(tmp_path / "store")
    spec = {"T1w": str(src / "*" / "t1.nii.gz")}
    with pytest.raises(StoreError, match="complex"):
        RadiObject.from_files(uri, spec, options=_options(backend))
    assert not os.path.exists(uri)  # not even an ingest.json saying "incomplete"
    nib.save(nib.Nifti1Image(good["s2"].array, good["s2"].affine), src / "s2" / "t1.nii.gz")
    RadiObject.from_files(uri, spec, options=_options(backend))
    _assert_good_store(uri)


def test_add_collection_to_existing_store_keeps_the_store(tmp_path: Path, backend: str) -> None:
    """Appending is not undone: the store stays, with what was committed; a retry finishes it."""
    uri = str(tmp_path / "store")
    RadiObject.from_images(uri, {"T1w": _good()}, options=_options(backend))
    radi = RadiObject(uri)
    items = [IngestItem(k, k, _failing_loader if k == "s1" else image(i)) for i, k in enumerate(IDS)]
    with pytest.raises(OSError, match="vanished"):
        radi.add_collection("T2w", items, options=_options(backend))
    radi = RadiObject(uri)
    _assert_exactly_good(radi["T1w"])
    assert radi["T2w"].obs_ids == ["s0"]  # the committed prefix
    good = [IngestItem(k, k, image(i)) for i, k in enumerate(IDS)]
    radi.add_collection("T2w", good, options=_options(backend), skip_existing=True)
    radi = RadiObject(uri)
    _assert_exactly_good(radi["T2w"], one_version=False)  # an item running at the failure: garbage
    assert verify_store(uri).ok


def _slow(load: Callable[[], ImageData]) -> Callable[[], ImageData]:
    def later() -> ImageData:
        time.sleep(0.5)
        return load()

    return later


def test_item_running_at_the_failure_writes_nothing_after_the_removal(tmp_path: Path, backend: str) -> None:
    """A slow item still being written when another fails: the removal waits for it."""
    uri = tmp_path / "T1w"
    good = _good()
    items = [IngestItem("s0", "s0", _slow(lambda: good["s0"])), IngestItem("s1", "s1", _complex())]
    with pytest.raises(StoreError):
        VolumeCollection.from_items(uri, items, options=WriteOptions(backend=backend, workers=2))
    time.sleep(0.7)
    assert not uri.exists()


def test_store_from_files_waits_for_running_items(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _nifti_sources(tmp_path, bad="s1")
    real = cohort.to_ingest_item

    def slow_first(task: Any, canonical: bool) -> IngestItem:
        item = real(task, canonical)
        return replace(item, load=_slow(item.image)) if task.obs_id == "s0" else item

    monkeypatch.setattr(cohort, "to_ingest_item", slow_first)
    uri = tmp_path / "store"
    with pytest.raises(StoreError, match="complex"):
        RadiObject.from_files(str(uri), {"T1w": str(src / "*" / "t1.nii.gz")}, options=WriteOptions(backend, workers=2))
    time.sleep(0.7)
    assert not uri.exists()
