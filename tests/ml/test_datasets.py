"""Datasets and the reader: correct crops, channels, labels, geometry, per-epoch draws, errors naming subjects."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from radiobject.errors import NotFoundError
from radiobject.ml.cache import InMemoryCache, NoCache
from radiobject.ml.datasets import GridPatchDataset, PatchDataset, SampleError, SliceDataset, VolumeDataset
from radiobject.ml.foreground import build_foreground_indices, foreground_index, foreground_uri
from radiobject.ml.points import scattered_points
from radiobject.ml.reader import VolumeReader
from radiobject.ml.sampling import EmptyLabelWarning
from radiobject.storage import files
from tests.ml._stores import coded_volume, decode_origin, make_store

SHAPE = (20, 24, 16)


@pytest.fixture(scope="module")
def radi(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ds") / "store", "zarr", n=4, shape=SHAPE, empty_label=(3,))


@pytest.fixture
def reader(radi):
    return VolumeReader.from_radi(radi, ["T1w", "FLAIR"], "seg")


def test_reader_is_frozen_picklable_and_reopens_per_process(reader):
    assert reader.subject_ids == ("sub-00", "sub-01", "sub-02", "sub-03")
    assert reader.shapes[0] == SHAPE and reader.num_channels() == 2
    reader.read_raw(0, "T1w")  # opens handles in this process
    clone = pickle.loads(pickle.dumps(reader))
    assert "_proc" not in clone.__dict__ and clone.location == reader.location
    np.testing.assert_array_equal(clone.read_raw(1, "T1w"), coded_volume(1, SHAPE))
    with pytest.raises(AttributeError):
        reader.label = "x"  # type: ignore[misc]  # the test checks the attribute is read-only


def test_reader_view_and_missing_collection(radi):
    view = radi.loc[["sub-02", "sub-00"]]
    r = VolumeReader.from_radi(view, "T1w")
    assert r.subject_ids == ("sub-02", "sub-00")
    assert decode_origin(float(r.read_raw(0, "T1w")[0, 0, 0]))[0] == 2  # the view's subject, not position 0
    with pytest.raises(NotFoundError):
        VolumeReader.from_radi(radi, ["nope"])


@pytest.mark.parametrize("cache", [NoCache(), InMemoryCache(1 << 24)])
def test_patch_is_the_right_crop_with_channels_and_padding(reader, cache):
    r = reader.with_cache(cache)
    img, lab = r.read_patch(1, (3, 4, 5), (6, 7, 8))
    assert img.shape == (2, 6, 7, 8) and img.dtype == np.float32 and lab.shape == (1, 6, 7, 8)
    full = coded_volume(1, SHAPE)
    np.testing.assert_array_equal(img[0], full[3:9, 4:11, 5:13])
    np.testing.assert_array_equal(img[1], full[3:9, 4:11, 5:13] + 0.5)
    # a patch over the border (and larger than the volume on z) is zero-padded
    img, lab = r.read_patch(1, (16, -2, 0), (8, 8, 20))
    np.testing.assert_array_equal(img[0, :4, 2:, :16], full[16:20, 0:6, :])
    assert (img[0, 4:] == 0).all() and (img[0, :, :2] == 0).all() and (img[0, :, :, 16:] == 0).all()


def test_patch_dataset_samples_new_every_epoch_reproducible(reader):
    ds = PatchDataset(reader, (8, 8, 8), patches_per_volume=3, seed=7)
    assert len(ds) == 12 and ds.subject_of(5) == 1
    s = ds[(0, 5)]
    assert set(s) >= {"image", "label", "subject_id", "affine", "spacing", "patch_origin"}
    subj, origin = decode_origin(float(s["image"][0, 0, 0, 0]))
    assert s["subject_id"] == "sub-01" and subj == 1 and origin == tuple(s["patch_origin"].tolist())
    # the patch affine maps voxel 0 of the patch to the world position of the origin
    aff = reader.affine(1)
    np.testing.assert_allclose(s["affine"].numpy()[:3, 3], aff[:3, :3] @ np.array(origin) + aff[:3, 3])
    np.testing.assert_allclose(s["spacing"].numpy(), [1.0, 1.2, 2.0])
    origins = [tuple(ds[(e, 5)]["patch_origin"].tolist()) for e in range(4)]
    assert len(set(origins)) > 1  # not the same patch every epoch
    assert origins[0] == tuple(ds[(0, 5)]["patch_origin"].tolist())  # deterministic per (seed, epoch, index)
    ds.set_epoch(2)
    assert tuple(ds[5]["patch_origin"].tolist()) == origins[2]


def test_foreground_sampling_uses_stored_index_and_warns_on_empty(radi, reader):
    ds = PatchDataset(reader, (4, 4, 4), sampler="foreground", foreground_prob=1.0)
    hits = [int(ds[(e, 0)]["label"].sum()) for e in range(10)]
    assert all(h > 0 for h in hits)  # every patch holds foreground
    uri = foreground_uri(reader, 0)
    assert files.exists(uri, reader.location.storage)  # stored beside the label volume
    assert "foreground" in str(uri) and "seg" in str(uri)
    with pytest.warns(EmptyLabelWarning, match="sub-03"):
        ds[(0, 3)]
    # class ratios: only class 2
    ds2 = PatchDataset(reader, (2, 2, 2), sampler={2: 1.0})
    for e in range(5):
        assert (ds2[(e, 1)]["label"] == 2).any()
    assert build_foreground_indices(reader) == 1  # only sub-02 was never used
    assert build_foreground_indices(reader) == 0  # all stored now (sub-03 as an empty index)


def test_foreground_index_computed_once_and_recomputed_when_stale(reader, tmp_path):
    fg = foreground_index(reader, 2)
    assert fg.labels == (1, 2) and fg.count(1) == 27 and fg.count(2) == 8
    uri = foreground_uri(reader, 2)
    files.write_bytes_atomic(uri, b"garbage", reader.location.storage)
    assert build_foreground_indices(reader, indices=[2]) == 1  # damaged file recomputed


def test_full_volume_and_slice_datasets(reader):
    vd = VolumeDataset(reader)
    s = vd[2]
    assert s["image"].shape == (2, *SHAPE) and s["label"].shape == (1, *SHAPE)
    sd = SliceDataset(reader, plane="axial")  # affine is diagonal: axial = array axis 2
    assert len(sd) == 4 * SHAPE[2]
    s = sd[SHAPE[2] + 5]
    assert s["subject_id"] == "sub-01" and s["image"].shape == (2, SHAPE[0], SHAPE[1])
    np.testing.assert_array_equal(s["image"][0].numpy(), coded_volume(1, SHAPE)[:, :, 5])
    assert tuple(s["patch_origin"].tolist()) == (0, 0, 5)
    sag = SliceDataset(reader, plane="sagittal")
    assert len(sag) == 4 * SHAPE[0] and sag[0]["image"].shape == (2, SHAPE[1], SHAPE[2])


def test_grid_patches_cover_every_voxel(reader):
    gd = GridPatchDataset(reader, (8, 8, 8), overlap=0.25)
    cover = np.zeros(SHAPE, int)
    for k in gd.patches_of(0):
        o = gd[k]["patch_origin"].numpy()
        cover[o[0] : o[0] + 8, o[1] : o[1] + 8, o[2] : o[2] + 8] += 1
    assert (cover > 0).all()


def test_error_names_the_subject(reader):
    ds = PatchDataset(reader, (8, 8, 8))
    ds.reader.volume(1, "T1w")  # opened, then the array disappears
    bad = VolumeReader(reader.location, ("T1w",), None, ("ghost",), (("ghost",),), (SHAPE,), reader.affines[:1])
    with pytest.raises(SampleError, match="ghost"):
        PatchDataset(bad, (8, 8, 8))[0]


def test_scattered_points_reads_each_chunk_once(reader):
    vol = reader.volume(0, "T1w")
    rng = np.random.default_rng(0)
    pts = np.stack([rng.integers(0, s, 200) for s in SHAPE], axis=1)
    calls = []
    orig = vol.read
    # the ignore below: spy on reads
    vol.read = lambda region, *a, **k: calls.append(tuple((r.start, r.stop) for r in region)) or orig(region, *a, **k)  # type: ignore[method-assign]
    cache = InMemoryCache(1 << 20)
    got = scattered_points(vol, pts, cache=cache, threads=4)
    full = coded_volume(0, SHAPE)
    np.testing.assert_array_equal(got, full[pts[:, 0], pts[:, 1], pts[:, 2]])
    assert len(calls) == len(set(calls)) <= int(np.prod([-(-s // 8) for s in SHAPE]))
    scattered_points(vol, pts, cache=cache)  # second time: all from the cache
    assert len(calls) == len(set(calls))
    with pytest.raises(IndexError, match="outside"):
        scattered_points(vol, [[0, 0, 99]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(reader.scattered_points(0, pts[:5]), full[tuple(pts[:5].T)])


@pytest.mark.parametrize("cache", [NoCache(), InMemoryCache(1 << 24)])
def test_batched_reads_equal_per_sample_collation(reader, cache):
    from radiobject.ml.datasets import collate

    ds = PatchDataset(reader.with_cache(cache), (8, 30, 8), seed=1)  # taller than the volume on y: padded
    keys = [(0, 0), (0, 3), (1, 2)]
    per_sample = collate([ds[k] for k in keys])
    ds.batched_reads = True
    batched = collate(ds.__getitems__(keys))  # a CollatedBatch: collate returns its batch dict
    assert set(batched) == set(per_sample)
    for k, v in per_sample.items():
        if isinstance(v, torch.Tensor):
            assert v.dtype == batched[k].dtype and torch.equal(v, batched[k]), k
        else:
            assert v == batched[k]
