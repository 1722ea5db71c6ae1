"""Pure patch-sampling functions: seeding, bounds, foreground containment, ratios, grids."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from radiobject.ml.sampling import (
    EmptyLabelWarning,
    ForegroundIndex,
    class_ratio_patch_origins,
    foreground_patch_origins,
    grid_patch_origins,
    item_rng,
    patch_slices,
    uniform_patch_origins,
)

SHAPE = (60, 50, 40)
PATCH = (16, 16, 16)


def _label(shape=SHAPE) -> np.ndarray:
    """Background with two small blobs: class 1 (27 voxels) and class 2 (8 voxels) far apart."""
    lab = np.zeros(shape, dtype=np.uint8)
    lab[5:8, 5:8, 5:8] = 1
    lab[55:57, 45:47, 36:38] = 2
    return lab


def _contains(origins: np.ndarray, patch, mask: np.ndarray) -> np.ndarray:
    out = []
    for o in origins:
        src, _ = patch_slices(o, patch, mask.shape)
        out.append(bool(mask[src].any()))
    return np.array(out)


# ---- seeding ------------------------------------------------------------------------------------


def test_item_rng_is_reproducible_and_differs_per_epoch_rank_worker_index():
    def draw(**kw: int) -> list[int]:
        return item_rng(7, **kw).integers(0, 2**62, size=4).tolist()

    base = {"epoch": 0, "index": 3}
    assert draw(**base) == draw(**base)
    variants = [
        {"epoch": 1, "index": 3},
        {"epoch": 0, "index": 4},
        {**base, "rank": 1},
        {**base, "worker": 1},
        {**base, "stream": 1},
    ]
    seen = {tuple(draw(**base))} | {tuple(draw(**v)) for v in variants}
    assert len(seen) == 1 + len(variants)
    assert draw(**base) != item_rng(8, **base).integers(0, 2**62, size=4).tolist()
    with pytest.raises(ValueError, match="epoch"):
        item_rng(0, -1, 0)


def test_patches_change_every_epoch_but_repeat_for_the_same_epoch():
    per_epoch = [uniform_patch_origins(SHAPE, PATCH, 4, item_rng(1, epoch, 0)) for epoch in range(5)]
    assert len({o.tobytes() for o in per_epoch}) == 5
    again = uniform_patch_origins(SHAPE, PATCH, 4, item_rng(1, 2, 0))
    np.testing.assert_array_equal(again, per_epoch[2])


# ---- uniform ------------------------------------------------------------------------------------


def test_uniform_origins_stay_in_bounds_and_are_unaligned():
    o = uniform_patch_origins(SHAPE, PATCH, 5000, item_rng(0, 0, 0))
    assert o.shape == (5000, 3) and o.dtype == np.int64
    hi = np.array(SHAPE) - np.array(PATCH)
    assert (o >= 0).all() and (o <= hi).all()
    for ax in range(3):  # every legal origin occurs, so nothing is snapped to a chunk grid
        assert set(np.unique(o[:, ax])) == set(range(hi[ax] + 1))


def test_uniform_origin_when_patch_larger_than_volume_is_padded_range():
    o = uniform_patch_origins((10, 40), (16, 16), 2000, item_rng(0, 0, 0))
    assert o[:, 0].min() == -6 and o[:, 0].max() == 0
    assert o[:, 1].min() == 0 and o[:, 1].max() == 24


def test_uniform_rejects_bad_patch():
    with pytest.raises(ValueError, match="patch_size"):
        uniform_patch_origins(SHAPE, (16, 16), 1, item_rng(0, 0, 0))
    with pytest.raises(ValueError, match="patch_size"):
        uniform_patch_origins(SHAPE, 0, 1, item_rng(0, 0, 0))


# ---- foreground index ---------------------------------------------------------------------------


def test_foreground_index_is_exact_small_and_round_trips():
    lab = _label()
    idx = ForegroundIndex.from_label(lab)
    assert idx.labels == (1, 2) and idx.counts == (27, 8) and not idx.is_empty
    for value in (1, 2):
        coords = idx.coordinates(value)
        assert (lab[tuple(coords.T)] == value).all() and len(coords) == idx.count(value)
        assert np.all(np.diff(idx.indices[idx.labels.index(value)].astype(np.int64)) > 0)
    assert idx.indices[0].dtype == np.uint32
    back = ForegroundIndex.from_arrays(idx.to_arrays())
    assert back.shape == idx.shape and back.labels == idx.labels and back.counts == idx.counts
    for a, b in zip(back.indices, idx.indices, strict=True):
        np.testing.assert_array_equal(a, b)
    # no pickle needed: np.savez / np.load(allow_pickle=False) round trip works on to_arrays()
    assert all(a.dtype != object for a in idx.to_arrays().values())


def test_foreground_index_caps_large_classes_deterministically():
    lab = np.zeros((64, 64, 64), dtype=np.int16)
    lab[:32] = 3  # 131,072 voxels of class 3
    a = ForegroundIndex.from_label(lab, max_per_class=1000, seed=5)
    b = ForegroundIndex.from_label(lab, max_per_class=1000, seed=5)
    assert a.counts == (131072,) and a.indices[0].size == 1000 and a.nbytes == 4000
    np.testing.assert_array_equal(a.indices[0], b.indices[0])
    assert (lab.reshape(-1)[a.indices[0]] == 3).all()
    # the kept sample spreads over the class, not just its first voxels
    assert a.coordinates(3)[:, 0].max() >= 28


def test_foreground_index_rejects_float_labels():
    with pytest.raises(TypeError, match="integer"):
        ForegroundIndex.from_label(np.zeros((4, 4), dtype=np.float32))


# ---- foreground-weighted ------------------------------------------------------------------------


def test_foreground_patches_always_contain_foreground_even_at_borders():
    lab = _label()
    idx = ForegroundIndex.from_label(lab)
    draw = foreground_patch_origins(idx, PATCH, 500, item_rng(0, 0, 0), subject="s1")
    assert (draw.targets > 0).all()
    assert _contains(draw.origins, PATCH, lab > 0).all()
    hi = np.array(SHAPE) - np.array(PATCH)
    assert (draw.origins >= 0).all() and (draw.origins <= hi).all()
    # classes are weighted by voxel count: 27 : 8
    frac2 = float((draw.targets == 2).mean())
    assert 0.08 < frac2 < 0.38, frac2


def test_foreground_prob_mixes_uniform_patches():
    idx = ForegroundIndex.from_label(_label())
    draw = foreground_patch_origins(idx, PATCH, 2000, item_rng(0, 0, 0), foreground_prob=0.33)
    frac = float((draw.targets != -1).mean())
    assert 0.29 < frac < 0.37, frac
    # uniform patches rarely hit these tiny blobs; centred ones always do
    hit = _contains(draw.origins, PATCH, _label() > 0)
    assert hit[draw.targets != -1].all() and hit[draw.targets == -1].mean() < 0.5


def test_empty_label_falls_back_to_uniform_with_warning_naming_subject():
    idx = ForegroundIndex.from_label(np.zeros(SHAPE, dtype=np.uint8))
    assert idx.is_empty
    with pytest.warns(EmptyLabelWarning, match="'BraTS-0042'"):
        draw = foreground_patch_origins(idx, PATCH, 10, item_rng(0, 0, 0), subject="BraTS-0042")
    assert (draw.targets == -1).all() and draw.origins.shape == (10, 3)


def test_small_volume_foreground_patch_is_padded_and_contains_voxel():
    lab = np.zeros((10, 30, 30), dtype=np.uint8)
    lab[9, 29, 0] = 1
    idx = ForegroundIndex.from_label(lab)
    draw = foreground_patch_origins(idx, (16, 16, 16), 20, item_rng(0, 0, 0))
    assert (draw.origins[:, 0] <= 0).all() and (draw.origins[:, 0] >= -6).all()
    assert _contains(draw.origins, (16, 16, 16), lab > 0).all()


# ---- per-class ratios ---------------------------------------------------------------------------


def test_class_ratios_are_respected():
    lab = _label()
    idx = ForegroundIndex.from_label(lab)
    draw = class_ratio_patch_origins(idx, PATCH, 4000, item_rng(0, 0, 0), ratios={0: 1, 1: 1, 2: 2})
    fr = {k: float((draw.targets == k).mean()) for k in (-1, 1, 2)}
    assert abs(fr[-1] - 0.25) < 0.03 and abs(fr[1] - 0.25) < 0.03 and abs(fr[2] - 0.5) < 0.03, fr
    for value in (1, 2):
        assert _contains(draw.origins[draw.targets == value], PATCH, lab == value).all()


def test_absent_class_is_dropped_with_warning_and_renormalised():
    idx = ForegroundIndex.from_label(_label())
    with pytest.warns(EmptyLabelWarning, match=r"'s9'.*\[4\]"):
        draw = class_ratio_patch_origins(idx, PATCH, 1000, item_rng(0, 0, 0), ratios={1: 1, 4: 1}, subject="s9")
    assert (draw.targets == 1).all()
    with pytest.warns(EmptyLabelWarning):
        draw = class_ratio_patch_origins(idx, PATCH, 5, item_rng(0, 0, 0), ratios={4: 1}, subject="s9")
    assert (draw.targets == -1).all()


def test_class_ratios_without_absent_classes_do_not_warn():
    idx = ForegroundIndex.from_label(_label())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        class_ratio_patch_origins(idx, PATCH, 10, item_rng(0, 0, 0), ratios={1: 1, 2: 1})
    with pytest.raises(ValueError, match="ratios"):
        class_ratio_patch_origins(idx, PATCH, 10, item_rng(0, 0, 0), ratios={1: -1})


# ---- grid ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_grid_covers_every_voxel_with_requested_overlap(overlap):
    shape = (60, 50, 7)
    patch = (16, 16, 16)
    origins = grid_patch_origins(shape, patch, overlap)
    cover = np.zeros(shape, dtype=np.int32)
    for o in origins:
        src, _ = patch_slices(o, patch, shape)
        cover[src] += 1
    assert (cover >= 1).all()
    assert (origins >= 0).all()
    assert (origins[:, :2] <= np.array(shape[:2]) - 16).all() and (origins[:, 2] == 0).all()
    step = max(1, int(16 * (1 - overlap)))
    xs = np.unique(origins[:, 0])
    assert (np.diff(xs)[:-1] == step).all() and xs[-1] == 44


def test_grid_exact_fit_has_no_duplicates_and_validates_overlap():
    o = grid_patch_origins((32, 32), 16, 0.0)
    assert o.tolist() == [[0, 0], [0, 16], [16, 0], [16, 16]]
    with pytest.raises(ValueError, match="overlap"):
        grid_patch_origins((32, 32), 16, 1.0)


def test_patch_slices_pads_outside_the_volume():
    vol = np.arange(100).reshape(10, 10)
    src, dst = patch_slices((-3, 6), (8, 8), vol.shape)
    buf = np.full((8, 8), -1)
    buf[dst] = vol[src]
    assert src == (slice(0, 5), slice(6, 10)) and dst == (slice(3, 8), slice(0, 4))
    assert (buf[:3] == -1).all() and (buf[:, 4:] == -1).all() and buf[3, 0] == 6
