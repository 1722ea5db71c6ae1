"""Loader factories: coverage per epoch, caches, patches_per_volume, resume, validation, inference + aggregation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from radiobject import RadiObject
from radiobject.ml import (
    CacheStrategy,
    LoadingMode,
    create_inference_dataloader,
    create_training_dataloader,
    create_validation_dataloader,
)
from radiobject.ml.aggregate import GridAggregator
from radiobject.ml.distributed import set_epoch
from radiobject.ml.loaders import to_device
from tests.ml._stores import coded_volume, decode_origin, make_store

SHAPE = (20, 24, 16)


@pytest.fixture(scope="module")
def radi(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ld") / "store", "zarr", n=4, shape=SHAPE)


def _epoch(loader, epoch):
    set_epoch(loader, epoch)
    return [b for b in loader]


def test_training_loader_covers_every_subject_each_epoch_new_order_and_patches(radi):
    loader = create_training_dataloader(
        radi, modalities=["T1w", "FLAIR"], label="seg", patch_size=(8, 8, 8), batch_size=2, seed=3
    )
    assert loader.pin_memory is torch.cuda.is_available()
    seen = []
    for e in range(3):
        batches = _epoch(loader, e)
        assert len(batches) == len(loader) == 2
        b = batches[0]
        assert b["image"].shape == (2, 2, 8, 8, 8) and b["image"].dtype == torch.float32
        assert b["label"].shape == (2, 1, 8, 8, 8) and b["affine"].shape == (2, 4, 4)
        ids = [s for b in batches for s in b["subject_id"]]
        assert sorted(ids) == ["sub-00", "sub-01", "sub-02", "sub-03"]
        for b in batches:  # each patch is the crop at its origin of its own subject
            for k, sid in enumerate(b["subject_id"]):
                subj, origin = decode_origin(float(b["image"][k, 0, 0, 0, 0]))
                assert f"sub-{subj:02d}" == sid and origin == tuple(b["patch_origin"][k].tolist())
        seen.append((ids, [tuple(o) for b in batches for o in b["patch_origin"].tolist()]))
    assert seen[0][0] != seen[1][0] or seen[0][0] != seen[2][0]  # order changes between epochs
    assert seen[0][1] != seen[1][1]  # new patches every epoch


def test_in_memory_cache_is_warm_after_first_epoch(radi):
    loader = create_training_dataloader(
        radi,
        modalities="T1w",
        patch_size=(8, 8, 8),
        batch_size=2,
        cache_strategy=CacheStrategy.IN_MEMORY,
        cache_bytes=1 << 26,
    )
    cache = loader.dataset.reader.cache
    _epoch(loader, 0)
    first = cache.misses
    assert first == len(cache) > 0  # caches hold chunks: each touched chunk decoded and stored once
    _epoch(loader, 0)  # the same patches again: every chunk comes from the cache
    assert cache.misses == first and cache.hits >= first


def test_patches_per_volume_loads_each_volume_once(radi):
    loader = create_training_dataloader(
        radi, modalities=["T1w", "FLAIR"], label="seg", patch_size=(6, 6, 6), batch_size=3, patches_per_volume=3
    )
    cache = loader.dataset.reader.cache  # the per-process volume buffer
    batches = _epoch(loader, 0)
    ids = [s for b in batches for s in b["subject_id"]]
    assert Counter(ids) == {f"sub-0{i}": 3 for i in range(4)}
    assert all(len(set(b["subject_id"])) == 1 for b in batches)  # a subject's patches stay together
    # 3 volumes (T1w, FLAIR, seg) per subject, 18 chunks each: every chunk touched is decoded once
    assert 0 < cache.misses == len(cache) <= 4 * 3 * 18
    origins = [tuple(o) for b in batches for o in b["patch_origin"].tolist()]
    assert len(set(origins)) > 4


def test_full_volume_and_slice_modes(radi):
    full = create_training_dataloader(radi, modalities="T1w", label="seg", patch_size=None, batch_size=2)
    b = next(iter(full))
    assert b["image"].shape == (2, 1, *SHAPE)
    sl = create_training_dataloader(
        radi, modalities="T1w", loading_mode=LoadingMode.SLICE_2D, plane="axial", batch_size=8, patch_size=None
    )
    assert len(sl.dataset) == 4 * SHAPE[2]
    assert next(iter(sl))["image"].shape == (8, 1, SHAPE[0], SHAPE[1])


def test_resume_mid_epoch_exactly(radi):
    kw = dict(modalities="T1w", patch_size=(4, 4, 4), batch_size=1, seed=11)
    ref = create_training_dataloader(radi, **kw)
    set_epoch(ref, 2)
    full = [(b["subject_id"][0], tuple(b["patch_origin"][0].tolist())) for b in ref]
    loader = create_training_dataloader(radi, **kw)
    set_epoch(loader, 2)
    it = iter(loader)
    first = [next(it) for _ in range(2)]
    state = loader.state_dict()
    assert state["epoch"] == 2 and state["segments"] == [[1, 2]] and state["sample_in_epoch"] == 2
    resumed = create_training_dataloader(radi, **kw)
    resumed.load_state_dict(state)
    rest = [(b["subject_id"][0], tuple(b["patch_origin"][0].tolist())) for b in resumed]
    got = [(b["subject_id"][0], tuple(b["patch_origin"][0].tolist())) for b in first] + rest
    assert got == full  # same samples, same patches, same order
    set_epoch(resumed, 3)  # the next epoch is a whole one again
    assert len(list(resumed)) == 4


def test_validation_loader_is_fixed_and_exact(radi):
    val = create_validation_dataloader(radi, modalities="T1w", label="seg", patch_size=(8, 8, 8), batch_size=3)
    runs = [[tuple(o) for b in _epoch(val, e) for o in b["patch_origin"].tolist()] for e in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 4
    full = create_validation_dataloader(radi, modalities="T1w")
    assert [b["subject_id"][0] for b in full] == ["sub-00", "sub-01", "sub-02", "sub-03"]
    create_validation_dataloader(radi, modalities="T1w", shard_mode="pad", patches_per_volume=4)  # shared config
    with pytest.raises(TypeError, match="bogus"):
        create_validation_dataloader(radi, modalities="T1w", bogus=1)


def test_device_delivery_and_to_device(radi):
    loader = create_training_dataloader(radi, modalities="T1w", patch_size=(4, 4, 4), device="cpu")
    b = next(iter(loader))
    assert b["image"].device.type == "cpu"
    moved = to_device({"a": [torch.zeros(1), "x"], "b": (torch.ones(1),)}, "cpu")
    assert moved["a"][1] == "x" and isinstance(moved["b"], tuple)


def test_error_surfaces_naming_the_subject(radi, tmp_path):
    store = make_store(tmp_path / "broken", "zarr", n=2, shape=(8, 8, 8))
    loader = create_training_dataloader(store, modalities="T1w", patch_size=(4, 4, 4), batch_size=1)
    import shutil

    shutil.rmtree(tmp_path / "broken" / "collections" / "T1w" / "volumes" / "sub-01")
    with pytest.raises(Exception, match="sub-01"):
        for e in range(2):
            _epoch(loader, e)


def test_inference_grid_aggregates_into_a_new_collection(radi, tmp_path):
    store = make_store(tmp_path / "inf", "zarr", n=3, shape=SHAPE)
    loader = create_inference_dataloader(
        store, modalities=["T1w", "FLAIR"], patch_size=(8, 8, 8), overlap=0.5, batch_size=4
    )
    agg = GridAggregator(store, loader.dataset, "pred")
    agg_lab = GridAggregator(store, loader.dataset, "pred_label", argmax=True)
    max_in_flight = 0
    for batch in loader:
        img = batch["image"]
        agg.add_batch(img[:, :1] * 2.0, batch)  # a "model": twice channel 0
        agg_lab.add_batch(torch.cat([img[:, :1] * 0, (img[:, :1] > 100_000).float()], 1), batch)
        max_in_flight = max(max_in_flight, agg.in_flight)
    assert max_in_flight <= 2  # out of core: only volumes in flight are held
    coll = agg.finalize()
    agg_lab.finalize()
    fresh = RadiObject(str(tmp_path / "inf"))
    assert "pred" in fresh.collection_names
    for i, sid in enumerate(["sub-00", "sub-01", "sub-02"]):
        vol = fresh["pred"].by_subject(sid)
        np.testing.assert_allclose(vol.to_numpy(), 2 * coded_volume(i, SHAPE))
        np.testing.assert_array_equal(vol.affine, fresh["T1w"].by_subject(sid).affine)
        lab = fresh["pred_label"].by_subject(sid).to_numpy()
        assert lab.dtype == np.uint8 and lab.max() == (1 if i > 0 else 0)
    assert len(coll) == 3
    with pytest.raises(ValueError, match="already exists"):
        GridAggregator(store, loader.dataset, "pred")


def test_train_steps_smoke_run(radi):
    from radiobject.ml.loaders import train_steps

    loader = create_training_dataloader(
        radi, modalities=["T1w", "FLAIR"], label="seg", patch_size=(8, 8, 8), batch_size=2
    )
    res = train_steps(loader, steps=5)  # 2 batches per epoch: crosses epochs
    assert res["steps"] == 5 and res["patches"] == 10 and res["patches_per_s"] > 0 and np.isfinite(res["loss"])


def test_thread_workers_give_the_same_batches(radi):
    kw = dict(
        modalities=["T1w", "FLAIR"],
        label="seg",
        patch_size=(6, 6, 6),
        batch_size=2,
        seed=4,
        cache_strategy=CacheStrategy.IN_MEMORY,
    )
    ref = [(b["subject_id"], b["patch_origin"].tolist()) for b in _epoch(create_training_dataloader(radi, **kw), 1)]
    loader = create_training_dataloader(radi, num_workers=2, worker_mode="threads", **kw)
    assert loader.num_workers == 0 and loader.threads == 2
    got = [(b["subject_id"], b["patch_origin"].tolist()) for b in _epoch(loader, 1)]
    assert got == ref
    with pytest.raises(ValueError, match="worker_mode"):
        create_training_dataloader(radi, num_workers=2, worker_mode="fibers", **kw)


def test_auto_worker_mode(radi, tmp_path, monkeypatch):
    from radiobject.ml import _worker_mode

    kw = dict(modalities=["T1w"], label="seg", patch_size=(6, 6, 6), batch_size=2)
    plain = create_training_dataloader(radi, num_workers=2, **kw)
    assert plain.threads == 2 and plain.num_workers == 0  # a small cohort, no per-sample Python: threads
    monkeypatch.setattr(_worker_mode, "PROCESS_COHORT_BYTES", 0)  # as if the cohort were large
    out_of_core = create_training_dataloader(radi, num_workers=2, **kw)
    assert out_of_core.threads == 0 and out_of_core.num_workers == 2  # decoding dominates: processes
    cohort = plain.dataset.reader.cohort_bytes()[0]
    cached = create_training_dataloader(radi, num_workers=2, cache_strategy=CacheStrategy.IN_MEMORY, **kw)
    assert cached.dataset.reader.cache.max_bytes >= cohort and cached.threads == 2  # served from memory
    monkeypatch.setattr(_worker_mode, "_SHM", str(tmp_path / "no-shm"))  # no /dev/shm: processes anyway
    assert create_training_dataloader(radi, num_workers=2, **kw).num_workers == 2
    tiny = type("Usage", (), {"free": 1 << 10})()  # too small a /dev/shm for the batches: threads need none
    monkeypatch.setattr(_worker_mode.shutil, "disk_usage", lambda path: tiny)
    assert create_training_dataloader(radi, num_workers=2, **kw).threads == 2
    with_tf = create_training_dataloader(radi, num_workers=2, transforms=lambda s: s, **kw)
    assert with_tf.threads == 0 and with_tf.num_workers == 2  # transforms hold the GIL: processes
    ctx = create_training_dataloader(radi, num_workers=2, multiprocessing_context="spawn", **kw)
    assert ctx.num_workers == 2


def test_thread_worker_error_names_the_subject(tmp_path):
    import shutil

    store = make_store(tmp_path / "broken", "zarr", n=4, shape=(16, 16, 12))
    shutil.rmtree(tmp_path / "broken" / "collections" / "T1w" / "volumes" / "sub-01")
    loader = create_training_dataloader(
        store, modalities="T1w", patch_size=(4, 4, 4), batch_size=1, num_workers=2, worker_mode="threads"
    )
    with pytest.raises(Exception, match="sub-01"):
        _epoch(loader, 0)


@pytest.mark.parametrize("sampler", ["uniform", "foreground"])
def test_batched_reads_equal_the_per_sample_path_exactly(tmp_path, sampler):
    """The hot path (one buffer per batch, per-subject tables, per-axis origin draws) gives the very
    tensors the per-sample path collated by ``default_collate`` gives, for uneven affines / shapes."""
    from radiobject.formats.image import ImageData
    from radiobject.ml.collate import collate
    from radiobject.ml.datasets import PatchDataset
    from radiobject.ml.loaders import build_reader

    rng = np.random.default_rng(0)
    imgs, segs = {}, {}
    for i, shape in enumerate([(20, 24, 16), (9, 30, 12), (17, 5, 21)]):
        affine = np.eye(4)
        affine[:3, :3] = rng.normal(size=(3, 3)) * 1.37
        affine[:3, 3] = rng.normal(size=3) * 50
        imgs[f"s{i}"] = ImageData(coded_volume(i, shape), affine, {}, f"synthetic/s{i}")
        seg = np.zeros(shape, np.uint8)
        seg[2:4, 1:3, 3:6] = 1
        segs[f"s{i}"] = ImageData(seg, affine, {}, f"synthetic/s{i}/seg")
    store = RadiObject.from_images(str(tmp_path / "s"), {"img": imgs, "seg": segs})
    ds = PatchDataset(build_reader(store, "img", "seg"), (8, 8, 8), patches_per_volume=7, sampler=sampler, seed=4)
    for epoch in (0, 3):
        for start in range(0, len(ds), 4):
            keys = [(epoch, i) for i in range(start, min(start + 4, len(ds)))]
            fast = ds.build_batch(keys)
            slow = collate([ds[k] for k in keys])
            assert list(fast) == list(slow)
            for key, value in slow.items():
                if isinstance(value, torch.Tensor):
                    assert fast[key].dtype == value.dtype and torch.equal(fast[key], value), key
                else:
                    assert fast[key] == value, key
            origins = [ds.origin(i, e).tolist() for e, i in keys]
            assert fast["patch_origin"].tolist() == origins


def test_worker_batches_unpickle_as_the_same_plain_dict():
    """``WireBatch``: small tensors inline, large ones through shared memory; a plain dict arrives."""
    import io
    import pickle
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401 - registers torch's shared-memory reductions

    from radiobject.ml.collate import INLINE_BYTES, WireBatch

    batch = {
        "image": torch.arange(2 * INLINE_BYTES, dtype=torch.float32).reshape(2, 1, -1),
        "subject_id": ["a", "b"],
        "index": torch.tensor([3, 9]),
        "affine": torch.rand(2, 4, 4, dtype=torch.float64),
        "patch_origin": torch.tensor([[1, 2, 3], [4, 5, 6]]).T.contiguous().T,  # a non-contiguous view
        "weights": torch.rand(2, 3).to(torch.bfloat16),  # a dtype numpy lacks: travels as a tensor
    }
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(WireBatch(batch))
    got = pickle.loads(buf.getvalue())
    assert type(got) is dict and list(got) == list(batch)
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
        else:
            assert got[key] == value


def test_a_store_path_and_an_int_patch_size_are_accepted(tmp_path) -> None:
    from radiobject.ml import create_training_dataloader
    from radiobject.ml.config import PatchConfig

    radi = make_store(tmp_path / "s", "zarr", n=3, shape=(12, 12, 12))
    for where in (radi.uri, Path(radi.uri)):
        batch = next(iter(create_training_dataloader(where, modalities=["T1w"], patch_size=8, batch_size=2)))
        assert tuple(batch["image"].shape) == (2, 1, 8, 8, 8)
    assert PatchConfig(patch_size=6).patch_size == (6, 6, 6)
    for bad in ("64", (8.5, 8, 8), [8, "x", 8]):
        with pytest.raises(TypeError, match="patch_size"):
            PatchConfig(patch_size=bad)  # type: ignore[arg-type]
    for bad in (0, (8, 8, 8, 8), (8, -1, 8), (8,)):
        with pytest.raises(ValueError, match="patch_size"):
            PatchConfig(patch_size=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RadiObject"):
        create_training_dataloader(42, modalities=["T1w"], patch_size=8)  # type: ignore[arg-type]


def test_a_source_that_is_not_a_store_is_a_typed_error(tmp_path: Path) -> None:
    from radiobject import ImageData, VolumeCollection
    from radiobject.ml.errors import LoaderArgumentError
    from radiobject.model.bulk import IngestItem

    coll = VolumeCollection.from_items(
        str(tmp_path / "c"), [IngestItem("a", "a", ImageData(np.zeros((8, 8, 8), np.float32), np.eye(4)))]
    )
    with pytest.raises(LoaderArgumentError, match=r"not VolumeCollection \(a collection: RadiObject.from_volume_col"):
        create_training_dataloader(coll, patch_size=(4, 4, 4))
    with pytest.raises(LoaderArgumentError, match=r"store path, not int$"):
        create_training_dataloader(3, patch_size=(4, 4, 4))
