"""Prefetch: the reads of the next samples run ahead, and nothing a sample contains changes.

Same samples with and without prefetch (both backends, with and without a chunk cache, batched and
per-sample paths), the same cache lookups, a damaged chunk still raising ``CorruptDataError`` when
the read started ahead is consumed, a bounded window cancelled by each new pass, and reads started
only where samples are read.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from radiobject.errors import CorruptDataError
from radiobject.ml import set_epoch
from radiobject.ml.cache import InMemoryCache
from radiobject.ml.cache import chunks as chunk_cache
from radiobject.ml.config import LoaderConfig
from radiobject.ml.datasets import GridPatchDataset, PatchDataset
from radiobject.ml.loaders import create_training_dataloader, create_validation_dataloader
from radiobject.ml.reader import VolumeReader
from radiobject.ml.sampler import RadiSampler
from radiobject.model.radi_object import RadiObject
from tests.ml._stores import coded_volume, make_store

SHAPE = (20, 24, 16)
PATCH = (10, 9, 12)  # unaligned to the 8^3 chunks; some origins pad


@pytest.fixture(autouse=True)
def _always_ahead(monkeypatch):
    """These tests read in tight loops, which leave nothing to overlap with (``Pace`` would turn the
    reads ahead off): they are forced on, to test what prefetch serves."""
    from radiobject.ml.dataloader import Pace

    monkeypatch.setattr(Pace, "SHARE", 0.0)


@pytest.fixture
def store(tmp_path: Path, backend: str) -> RadiObject:
    return make_store(tmp_path / "radi", backend, n=4, shape=SHAPE, chunks=(8, 8, 8))


def _epochs(loader, epochs: int = 2) -> list[dict]:
    out = []
    for epoch in range(epochs):
        set_epoch(loader, epoch)
        out.extend(loader)
    return out


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert torch.equal(x[k], y[k]), k
            else:
                assert x[k] == y[k], k


@pytest.mark.parametrize("cache", ["none", "chunks"])
def test_samples_are_the_same_with_and_without_prefetch(store, backend, monkeypatch, cache: str) -> None:
    monkeypatch.setattr(chunk_cache, "WHOLE_VOLUMES_UP_TO", 0.0)  # chunk entries, as for a large cohort
    runs, stats, lookups = {}, {}, {}
    for k in (0, 6):
        reader = VolumeReader.from_radi(store, ["T1w", "FLAIR"], "seg")
        if cache == "chunks":
            reader = reader.with_cache(InMemoryCache(120_000))  # smaller than the cohort: it fills up
        random.seed(7)  # the cache's admission draws, once full
        loader = create_training_dataloader(reader, patch_size=PATCH, batch_size=3, seed=5, prefetch_patches=k)
        assert loader.sampler.prefetch_patches == k
        runs[k] = _epochs(loader)
        stats[k] = reader.prefetch_stats()
        if cache == "chunks":
            lookups[k] = (reader.cache.hits, reader.cache.misses, len(reader.cache))
    _same(runs[0], runs[6])
    assert stats[0]["started"] == 0
    assert stats[6]["used"] > len(runs[6])  # most patches (3 collections each) came from reads ahead
    assert stats[6]["held"] <= 6
    if cache == "chunks":
        assert lookups[0] == lookups[6]  # the cache saw the very same lookups and admissions


@pytest.mark.parametrize("how", ["threads", "validation"])
def test_worker_threads_and_validation_patches(store, how: str) -> None:
    """Loader threads share the window (reads out of order); validation draws its fixed epoch."""
    runs, used = {}, {}
    for k in (0, 4):
        reader = VolumeReader.from_radi(store, ["T1w"], "seg")
        if how == "threads":
            loader = create_training_dataloader(
                reader, patch_size=PATCH, batch_size=2, num_workers=2, worker_mode="threads", prefetch_patches=k
            )
        else:
            loader = create_validation_dataloader(reader, patch_size=PATCH, batch_size=2, prefetch_patches=k)
        runs[k] = _epochs(loader, 3)
        used[k] = reader.prefetch_stats()["used"]
    _same(runs[0], runs[4])
    assert used[0] == 0 and used[4] > 0


@pytest.mark.parametrize("buffer", [0, 64 << 20])
def test_per_sample_path_and_patches_per_volume(store, buffer: int) -> None:
    """Samples built one by one (``read_patch``, as with transforms); with a volume buffer (whole
    volumes cached) nothing is planned per patch."""
    out = {}
    for k in (0, 4):
        reader = VolumeReader.from_radi(store, ["T1w"], "seg")
        ds = PatchDataset(reader, PATCH, patches_per_volume=2, seed=3, volume_buffer_bytes=buffer)
        sampler = RadiSampler(ds, 1, 0, seed=3, group_size=2, prefetch_patches=k)
        samples = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            samples.extend(ds[key] for key in sampler)
        out[k] = (samples, ds.reader.prefetch_stats())
    _same(out[0][0], out[4][0])
    assert (out[4][1]["used"] > 0) == (buffer == 0)


def test_grid_patches_are_prefetched_too(store) -> None:
    reader = VolumeReader.from_radi(store, ["T1w"], "seg")
    ds = GridPatchDataset(reader, (8, 16, 8), with_label=True)
    sampler = RadiSampler(ds, 1, 0, shuffle=False, mode="exact", prefetch_patches=3)
    got = [ds[key] for key in sampler]
    plain = GridPatchDataset(VolumeReader.from_radi(store, ["T1w"], "seg"), (8, 16, 8), with_label=True)
    _same(got, [plain[i] for i in range(len(plain))])
    assert reader.prefetch_stats()["used"] > 0


def _shard_or_tile(store: RadiObject, subject: str) -> Path:
    vol = Path(store.T1w.volume(store.T1w.obs.set_index("obs_subject_id").loc[subject, "obs_id"]).uri)
    files = [p for p in vol.rglob("*") if p.is_file() and (p.name == "0" or p.name.endswith(".tdb"))]
    return max(files, key=lambda p: p.stat().st_size)


def test_a_damaged_chunk_raises_when_the_read_ahead_is_consumed(store, backend) -> None:
    target = _shard_or_tile(store, "sub-01")
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0x04
    target.write_bytes(bytes(data))
    reader = VolumeReader.from_radi(RadiObject(store.uri), ["T1w"], None)
    image = np.zeros((1, *SHAPE), np.float32)
    assert reader.prefetch_patch(1, (0, 0, 0), SHAPE, with_label=False, capacity=2)  # never raises
    assert reader.prefetch_stats()["held"] == 1
    with pytest.raises(CorruptDataError) as info:
        reader.read_patch_into(1, (0, 0, 0), SHAPE, image)
    assert info.value.subject == "sub-01" and info.value.collection == "T1w" and info.value.store == store.uri
    assert reader.prefetch_stats()["used"] == 1  # raised by the read started ahead, not by a new one
    reader.read_patch_into(0, (0, 0, 0), SHAPE, image)  # the other subject is fine


def test_only_the_very_region_and_version_are_served(store) -> None:
    reader = VolumeReader.from_radi(store, ["T1w"], None)
    plain = VolumeReader.from_radi(store, ["T1w"], None)
    reader.prefetch_patch(2, (1, 2, 3), PATCH, capacity=4)
    for origin in [(1, 2, 4), (2, 2, 3)]:  # another origin: read from the store, the entry stays
        got, want = reader.read_patch(2, origin, PATCH)[0], plain.read_patch(2, origin, PATCH)[0]
        np.testing.assert_array_equal(got, want)
    assert reader.prefetch_stats() == {"started": 1, "used": 0, "dropped": 0, "held": 1}
    window = reader._window()
    (entry,) = window.entries.values()
    box, future, _ = entry["reads"]["T1w"]
    entry["reads"]["T1w"] = (box, future, "another-version")
    np.testing.assert_array_equal(reader.read_patch(2, (1, 2, 3), PATCH)[0], plain.read_patch(2, (1, 2, 3), PATCH)[0])
    assert reader.prefetch_stats()["used"] == 0 and reader.prefetch_stats()["dropped"] == 1


def test_the_window_is_bounded_and_a_new_pass_cancels_it(store) -> None:
    reader = VolumeReader.from_radi(store, ["T1w"], "seg")
    ds = PatchDataset(reader, PATCH, seed=1)
    sampler = RadiSampler(ds, 1, 0, seed=1, prefetch_patches=2)
    it = iter(sampler)
    next(it)
    assert reader.prefetch_stats()["started"] == 0  # nothing read in this process yet: nothing ahead
    ds[(0, 0)]
    for _ in range(2):  # handed out, never read
        next(it)
    assert reader.prefetch_stats()["held"] == 2  # bounded by prefetch_patches
    sampler.set_epoch(1)
    next(iter(sampler))
    stats = reader.prefetch_stats()
    assert stats["dropped"] == 4 and stats["held"] == 2  # the last pass's 2 patches x 2 collections


def test_prefetch_patches_option() -> None:
    assert LoaderConfig().prefetch_patches is None
    with pytest.raises(ValueError, match="prefetch_patches"):
        LoaderConfig(prefetch_patches=-1)


def test_default_is_twice_the_batch_size(store) -> None:
    loader = create_training_dataloader(store, modalities=["T1w"], patch_size=PATCH, batch_size=3)
    assert loader.sampler.prefetch_patches == 6


def test_backend_read_async_matches_read(store, backend) -> None:
    vol = store.T1w.volume(store.T1w.obs["obs_id"].iloc[0])
    region = (slice(3, 17), slice(0, 9), slice(5, 16))
    future = vol.read_async(region)
    np.testing.assert_array_equal(future.result(), vol.read(region))
    assert vol._array().async_reads == (backend == "zarr")
    with pytest.raises(IndexError):
        vol.read_async((3, slice(None), slice(None)))


def test_a_damaged_chunk_raises_through_the_pooled_in_memory_cache(tmp_path: Path, monkeypatch) -> None:
    """A cohort larger than the in-memory cache (Zarr: tensorstore's pool) never serves a damaged
    chunk: the read raises the typed error; the undamaged subject reads exactly."""
    monkeypatch.setattr(chunk_cache, "WHOLE_VOLUMES_UP_TO", 0.0)  # the cohort "does not fit"
    store = make_store(tmp_path / "radi", "zarr", n=2, shape=SHAPE, chunks=(8, 8, 8))
    target = _shard_or_tile(store, "sub-01")
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0x04
    target.write_bytes(bytes(data))
    reader = VolumeReader.from_radi(RadiObject(store.uri), ["T1w"], None).with_cache(InMemoryCache(64 << 20))
    image = np.zeros((1, *SHAPE), np.float32)
    for _ in range(2):  # cold, then with the pool filled by the good subject
        reader.read_patch_into(0, (0, 0, 0), SHAPE, image)
        np.testing.assert_array_equal(image[0], coded_volume(0, SHAPE))
        with pytest.raises(CorruptDataError) as info:
            reader.read_patch_into(1, (0, 0, 0), SHAPE, image)
        assert info.value.subject == "sub-01"
    assert reader._pooled()


def test_pace_reads_ahead_only_while_the_consumer_leaves_time(monkeypatch) -> None:
    """``Pace``: reads ahead pay while the consumer's step is at least a quarter of the load time."""
    from radiobject.ml.dataloader import Pace

    monkeypatch.setattr(Pace, "SHARE", 0.25)

    now = [0.0]
    pace = Pace(clock=lambda: now[0])
    now[0] += 0.010
    assert pace.arrived()  # no consumer seen yet: read ahead
    for _ in range(20):  # a consumer that asks again at once
        now[0] += 0.00001
        pace.asked()
        now[0] += 0.010
        busy = pace.arrived()
    assert not busy
    for _ in range(20):  # a training step as long as the load
        now[0] += 0.010
        pace.asked()
        now[0] += 0.010
        busy = pace.arrived()
    assert busy


def test_a_tight_loop_turns_reads_ahead_off_and_a_step_back_on(tmp_path: Path, monkeypatch) -> None:
    import time

    from radiobject.ml.dataloader import Pace

    monkeypatch.setattr(Pace, "SHARE", 0.25)

    radi = make_store(tmp_path / "radi", "zarr", n=4, shape=SHAPE, chunks=(8, 8, 8))
    loader = create_training_dataloader(radi, modalities="T1w", patch_size=PATCH, batch_size=2, prefetch_patches=4)
    for epoch in range(3):
        set_epoch(loader, epoch)
        for _ in loader:
            pass
    assert loader.sampler.overlap is False  # nothing to overlap with: reads ahead would only compete
    for epoch in range(3, 8):
        set_epoch(loader, epoch)
        for _ in loader:
            time.sleep(0.02)  # a training step, far longer than a read of this tiny store
    assert loader.sampler.overlap is True
