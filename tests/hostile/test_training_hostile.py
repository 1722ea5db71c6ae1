"""A hostile ML user of the loaders: bad arguments, hostile data, writers and dying workers during an
epoch, tampered resume states, bad predictions. Every case ends in a typed radiobject error naming
what is wrong (or in correct data), never a bare traceback, a hang or silently wrong samples."""

from __future__ import annotations

import glob
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radiobject import RadiObject, WriteOptions
from radiobject.errors import AlignmentError, CorruptDataError, DuplicateIdError, InvalidIdError, RadiObjectError
from radiobject.formats.image import ImageData
from tests.ml._stores import make_store

pytestmark = pytest.mark.timeout(120)
torch = pytest.importorskip("torch")

from radiobject.ml import (  # noqa: E402 - after the torch skip
    BatchShapeError,
    EmptySelectionError,
    LabelValueError,
    LoaderConfigError,
    ResumeStateError,
    SampleError,
    WorkerError,
    WorkerTimeoutError,
    create_inference_dataloader,
    create_training_dataloader,
    create_validation_dataloader,
    set_epoch,
)
from radiobject.ml.aggregate import CollectionExistsError, GridAggregator, PredictionError  # noqa: E402

SHAPE = (20, 24, 16)


@pytest.fixture
def radi(tmp_path: Path) -> RadiObject:
    return make_store(tmp_path / "s", "zarr", n=4, shape=SHAPE)


def _loader(radi: Any, **kw: Any) -> Any:
    args: dict[str, Any] = dict(modalities=["T1w", "FLAIR"], label="seg", patch_size=(8, 8, 8), batch_size=1)
    args.update(kw)
    return create_training_dataloader(radi, **args)


def _store(root: Path, cols: dict[str, dict[str, np.ndarray]]) -> RadiObject:
    data = {c: {s: ImageData(a, np.eye(4), {}, f"x/{s}/{c}") for s, a in per.items()} for c, per in cols.items()}
    return RadiObject.from_images(str(root), data, options=WriteOptions(backend="zarr", chunks=(8, 8, 8)))


def _img(shape: tuple[int, ...] = (10, 10, 10)) -> np.ndarray:
    return np.random.default_rng(0).random(shape).astype(np.float32)


def _damage(radi: RadiObject, subject: str = "sub-02") -> None:
    shard = sorted(glob.glob(f"{radi.uri}/collections/T1w/volumes/{subject}/*/c/0/0/0"))[0]
    raw = bytearray(Path(shard).read_bytes())
    raw[40] ^= 0x55
    Path(shard).write_bytes(bytes(raw))


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    "kw",
    [
        {"patch_size": (-4, 8, 8)},
        {"patch_size": (8.7, 8, 8)},
        {"patch_size": "648"},
        {"batch_size": 2.5},
        {"num_workers": -1},
        {"foreground_prob": 1.5, "sampler": "foreground"},
        {"sampler": "nope"},
        {"sampler": {1: -1.0, 2: 0.0}},
        {"loading_mode": "slice_2d", "patch_size": None, "plane": 7},
        {"loading_mode": "slice_2d", "patch_size": None, "plane": -1},
        {"seed": -1},
        {"seed": 1.5},
        {"device": "tpu"},
        {"timeout": -1},
        {"multiprocessing_context": "nope"},
        {"cache_strategy": "in_memory", "cache_bytes": -5},
        {"rank": 0, "world_size": 0},
        {"modalities": []},
    ],
)
def test_bad_arguments_are_typed_before_any_read(radi: RadiObject, kw: dict[str, Any]) -> None:
    with pytest.raises(LoaderConfigError):  # a RadiObjectError and a ValueError (or TypeError)
        _loader(radi, **kw)


def test_inference_overlap_nan_is_typed(radi: RadiObject) -> None:
    with pytest.raises(LoaderConfigError, match="overlap"):
        create_inference_dataloader(radi, modalities=["T1w"], patch_size=(8, 8, 8), overlap=float("nan"))


@pytest.mark.parametrize("kw", [{"modalities": ["T1w", "T1w"]}, {"subjects": ["sub-00", "sub-00"]}])
def test_a_name_given_twice_is_an_error_not_a_duplicate_channel_or_subject(radi: RadiObject, kw: dict) -> None:
    with pytest.raises(DuplicateIdError):
        _loader(radi, **kw)


def test_nothing_selected_is_an_error_not_an_empty_epoch(radi: RadiObject) -> None:
    with pytest.raises(EmptySelectionError):
        _loader(radi, subjects=[])
    with pytest.raises(EmptySelectionError):
        _loader(radi.loc[[]])
    with pytest.raises(EmptySelectionError):
        create_validation_dataloader(radi, modalities=["T1w"], subjects=[])


def test_disk_cache_never_inside_the_store_nor_on_a_file(radi: RadiObject, tmp_path: Path) -> None:
    before = sorted(os.listdir(radi.uri))
    with pytest.raises(LoaderConfigError, match="inside the store"):
        _loader(radi, cache_strategy="disk", cache_path=os.path.join(radi.uri, "cache"))
    assert sorted(os.listdir(radi.uri)) == before
    (tmp_path / "f").write_text("x")
    with pytest.raises(LoaderConfigError, match="cache directory"):
        _loader(radi, cache_strategy="disk", cache_path=str(tmp_path / "f"))


# ------------------------------------------------------------------ hostile data
def test_float_label_with_fractions_is_typed_never_truncated(tmp_path: Path) -> None:
    seg = np.zeros((10, 10, 10), np.float32)
    seg[2:5, 2:5, 2:5] = 0.6
    radi = _store(tmp_path / "s", {"img": {"a": _img()}, "seg": {"a": seg}})
    for make in (
        lambda: create_training_dataloader(radi, modalities=["img"], label="seg", patch_size=(10, 10, 10)),
        lambda: create_validation_dataloader(radi, modalities=["img"], label="seg"),
    ):
        with pytest.raises(LabelValueError, match="non-integer"):
            next(iter(make()))


def test_float_label_with_whole_numbers_is_delivered_exactly(tmp_path: Path) -> None:
    seg = np.zeros((10, 10, 10), np.float32)
    seg[2:5, 2:5, 2:5] = 2.0
    radi = _store(tmp_path / "s", {"img": {"a": _img()}, "seg": {"a": seg}})
    batch = next(iter(create_training_dataloader(radi, modalities=["img"], label="seg", patch_size=(10, 10, 10))))
    assert int(batch["label"].sum()) == 54


def test_labels_of_several_dtypes_in_one_batch_are_not_truncated(tmp_path: Path) -> None:
    small = np.zeros((10, 10, 10), np.uint8)
    big = np.zeros((10, 10, 10), np.int16)
    big[1, 1, 1] = 300
    radi = _store(tmp_path / "s", {"img": {"a": _img(), "b": _img()}, "seg": {"a": small, "b": big}})
    loader = create_training_dataloader(radi, modalities=["img"], label="seg", patch_size=(10, 10, 10), batch_size=2)
    assert int(next(iter(loader))["label"].max()) == 300


@pytest.mark.parametrize("which", ["2d", "label4d"])
def test_volumes_the_loaders_cannot_use_are_refused_when_built(tmp_path: Path, which: str) -> None:
    if which == "2d":
        radi = _store(tmp_path / "s", {"img": {"a": _img((10, 10))}})
        kw: dict[str, Any] = {"modalities": ["img"]}
    else:
        radi = _store(tmp_path / "s", {"img": {"a": _img()}, "seg": {"a": np.zeros((10, 10, 10, 2), np.uint8)}})
        kw = {"modalities": ["img"], "label": "seg"}
    with pytest.raises(AlignmentError, match="'a'"):
        create_training_dataloader(radi, patch_size=(4, 4, 4), **kw)


# ------------------------------------------------------------------ writers during an epoch
def _other(value: float, shape: tuple[int, ...], shift: float = 0.0) -> ImageData:
    affine = np.diag([1.0, 1.2, 2.0, 1.0])
    affine[:3, 3] = [-10.0 + shift, 5.0, 3.0]
    return ImageData(np.full(shape, value, np.float32), affine, {}, "replacement")


@pytest.mark.parametrize("shape, shift", [((30, 30, 30), 0.0), (SHAPE, 50.0)])
def test_volume_replaced_after_the_loader_was_built_is_read_whole_in_its_old_version(
    radi: RadiObject, shape: tuple[int, ...], shift: float
) -> None:
    loader = _loader(radi, modalities=["T1w"], patch_size=None, subjects=["sub-00"])
    old = radi.T1w.by_subject("sub-00").to_numpy()
    RadiObject(radi.uri).T1w.replace("sub-00", _other(-7.0, shape, shift))
    batch = next(iter(loader))
    assert tuple(batch["image"].shape[2:]) == SHAPE == tuple(batch["label"].shape[2:])
    np.testing.assert_array_equal(batch["image"][0, 0].numpy(), old)  # whole old, never the new grid


def test_old_version_removed_while_the_loader_held_it_is_typed(radi: RadiObject) -> None:
    loader = _loader(radi, modalities=["T1w"], subjects=["sub-01"])
    fresh = RadiObject(radi.uri)
    fresh.T1w.replace("sub-01", _other(-7.0, SHAPE))
    fresh.T1w.collect_garbage(grace_seconds=0)
    with pytest.raises(CorruptDataError, match="rebuild the loader") as info:
        next(iter(loader))
    assert isinstance(info.value, SampleError) and info.value.subject == "sub-01"


# ------------------------------------------------------------------ worker processes
def test_damaged_chunk_in_a_worker_process_keeps_its_type_and_names_the_subject(radi: RadiObject) -> None:
    _damage(radi)
    loader = _loader(radi, patch_size=None, num_workers=2, worker_mode="processes")
    with pytest.raises(CorruptDataError) as info:  # not torch's bare RuntimeError
        list(loader)
    assert isinstance(info.value, SampleError) and info.value.subject == "sub-02"
    assert "sub-02" in str(info.value) and "Traceback" not in str(info.value)


def test_store_gone_before_the_workers_read_is_typed(radi: RadiObject) -> None:
    import shutil

    loader = _loader(radi, num_workers=2, worker_mode="processes")
    shutil.rmtree(radi.uri)
    with pytest.raises(RadiObjectError, match="radiobject.json") as info:
        list(loader)
    assert not isinstance(info.value, RuntimeError)


def test_ragged_batch_in_a_worker_is_a_batch_shape_error(tmp_path: Path) -> None:
    radi = _store(tmp_path / "s", {"img": {"a": _img(), "b": _img((12, 10, 10))}})
    loader = create_validation_dataloader(
        radi, modalities=["img"], batch_size=2, num_workers=1, worker_mode="processes"
    )
    with pytest.raises(BatchShapeError, match="'b'"):
        list(loader)


def test_transform_returning_none_is_typed(radi: RadiObject) -> None:
    with pytest.raises(SampleError, match="transform must return"):
        next(iter(_loader(radi, batch_size=2, transforms=_none)))


def _none(sample: dict) -> None:
    return None


def test_killed_worker_is_a_typed_error_and_the_next_epoch_starts_new_workers(radi: RadiObject) -> None:
    loader = _loader(radi, num_workers=2, worker_mode="processes", patches_per_volume=20)
    it = iter(loader)
    next(it)
    os.kill(loader._iterator._workers[0].pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(WorkerError, match="worker"):
        for _ in it:
            time.sleep(0.01)
    assert time.monotonic() - t0 < 30
    set_epoch(loader, 1)
    assert len(list(loader)) == 80


class _Slow:
    def __call__(self, sample: dict) -> dict:
        time.sleep(20)
        return sample


def test_stuck_worker_is_a_typed_timeout(radi: RadiObject) -> None:
    loader = _loader(radi, num_workers=1, transforms=_Slow(), timeout=2)
    t0 = time.monotonic()
    with pytest.raises(WorkerTimeoutError):
        next(iter(loader))
    assert time.monotonic() - t0 < 15


def test_unpicklable_transform_for_spawn_workers_is_typed(radi: RadiObject) -> None:
    loader = _loader(radi, num_workers=1, transforms=lambda s: s, multiprocessing_context="spawn")
    with pytest.raises(LoaderConfigError, match="picklable"):
        next(iter(loader))


# ------------------------------------------------------------------ resume states
def _state(radi: RadiObject, **kw: Any) -> dict:
    loader = _loader(radi, patches_per_volume=2, **kw)
    it = iter(loader)
    next(it)
    return loader.state_dict()


@pytest.mark.parametrize(
    "tamper, kw",
    [
        (None, {"seed": 1}),
        (None, {"patch_size": (4, 4, 4)}),
        (None, {"subjects": ["sub-02", "sub-03", "sub-00", "sub-01"][:2]}),
        (lambda s: s.update(shuffle=False), {}),
        (lambda s: s.update(segments=[[1, -3]]), {}),
        (lambda s: s.update(segments=[[1, 10**6]]), {}),
        (lambda s: s.update(segments=[]), {}),
        (lambda s: s.update(segments="abc"), {}),
        (lambda s: s.update(epoch="x"), {}),
        (lambda s: s.pop("segments"), {}),
    ],
)
def test_resume_state_of_another_loader_or_tampered_is_typed(radi: RadiObject, tamper: Any, kw: dict) -> None:
    state = _state(radi, subjects=["sub-00", "sub-01"]) if "subjects" in kw else _state(radi)
    if tamper is not None:
        tamper(state)
    loader = _loader(radi, patches_per_volume=2, **kw)
    with pytest.raises(ResumeStateError):
        loader.load_state_dict(state)


def test_resume_state_that_is_not_a_dict_is_typed(radi: RadiObject) -> None:
    with pytest.raises(ResumeStateError):
        _loader(radi).load_state_dict([1, 2])  # type: ignore[arg-type]


# ------------------------------------------------------------------ GridAggregator
def _grid(radi: RadiObject) -> Any:
    return create_inference_dataloader(radi, modalities=["T1w"], patch_size=(8, 8, 8), overlap=0.5, batch_size=2)


def test_argmax_of_more_than_256_classes_is_not_wrapped(radi: RadiObject) -> None:
    loader = _grid(radi)
    agg = GridAggregator(radi, loader.dataset, "pred", argmax=True)
    for batch in loader:
        out = torch.zeros(batch["image"].shape[0], 300, 8, 8, 8)
        out[:, 299] = 1.0
        agg.add_batch(out, batch)
    agg.finalize()
    assert int(RadiObject(radi.uri).pred.by_subject("sub-00").to_numpy().max()) == 299


def test_integer_prediction_dtype_out_of_range_is_typed(radi: RadiObject) -> None:
    loader = _grid(radi)
    agg = GridAggregator(radi, loader.dataset, "pred", dtype=np.uint8)
    with pytest.raises(PredictionError, match="outside uint8"):
        for batch in loader:
            agg.add_batch(batch["image"], batch)  # values up to ~3e5


@pytest.mark.parametrize("bad", ["shape", "batch", "channels", "index", "no_index"])
def test_predictions_that_do_not_fit_the_grid_are_typed(radi: RadiObject, bad: str) -> None:
    loader = _grid(radi)
    agg = GridAggregator(radi, loader.dataset, "pred")
    it = iter(loader)
    batch = next(it)
    with pytest.raises(PredictionError):
        if bad == "shape":
            agg.add_batch(torch.zeros(2, 1, 4, 4, 4), batch)
        elif bad == "batch":
            agg.add_batch(torch.zeros(1, 1, 8, 8, 8), batch)
        elif bad == "channels":
            agg.add_batch(torch.zeros(2, 1, 8, 8, 8), batch)
            agg.add_batch(torch.zeros(2, 3, 8, 8, 8), next(it))
        elif bad == "index":
            agg.add(-1, np.zeros((1, 8, 8, 8)))
        else:
            agg.add_batch(batch["image"], {k: v for k, v in batch.items() if k != "index"})
    if bad == "channels":  # the volume begun stays unwritten, and finalize says so
        with pytest.raises(PredictionError, match="patches missing"):
            agg.finalize()


def test_aggregator_checks_its_dataset_and_the_collection_name(radi: RadiObject) -> None:
    with pytest.raises(LoaderConfigError, match="GridPatchDataset"):
        GridAggregator(radi, _loader(radi).dataset, "pred")
    with pytest.raises(InvalidIdError):
        GridAggregator(radi, _grid(radi).dataset, "../evil")
    with pytest.raises(CollectionExistsError):  # also a ValueError, as before
        GridAggregator(radi, _grid(radi).dataset, "T1w")
