"""Races with real processes (spawn): writers serialised, readers never see a torn volume or a
missing fragment, N ranks writing one new collection lose nothing, two ingests into one new store.

Each race runs ROUNDS times with the processes released together by a barrier, so that a race
cannot pass by luck.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radiobject import RadiObject, VolumeCollection, WriteOptions
from radiobject.formats.image import ImageData
from radiobject.model.bulk import IngestItem
from tests.model.helpers import image

ROUNDS = 20
SHAPE = (10, 12, 8)
AFFINE = np.diag([1.0, 1.5, 2.0, 1.0])


def _const(value: int) -> ImageData:
    return ImageData(np.full(SHAPE, value, np.int16), AFFINE, {}, f"const-{value}")


def _run(target: Any, args_per_proc: list[tuple[Any, ...]], timeout: float = 240) -> list[Any]:
    """Starts one spawned process per args tuple (each gets a result queue last); returns results."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, queue)) for a in args_per_proc]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * len(procs), results
    errors = [r for r in results if isinstance(r, str) and r.startswith("ERROR")]
    assert not errors, errors
    return results


# ------------------------------------------------------------------ N ranks, one new collection
def _rank_writes(root: str, backend: str, rank: int, world: int, subjects: list[str], barrier, queue) -> None:
    try:
        for k in range(ROUNDS):
            radi = RadiObject(f"{root}/r{k}")
            mine = subjects[rank::world]
            barrier.wait(60)  # all ranks add the same new collection at once
            for sid in mine:
                item = IngestItem(sid, sid, image(int(sid[1:]) + 100 * k), {}, f"pred:{sid}")
                radi.add_collection("pred", [item], options=WriteOptions(backend=backend))
            barrier.wait(60)
            RadiObject(f"{root}/r{k}")["pred"].compact()  # every rank compacts, as GridAggregator.finalize does
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"ERROR rank {rank}: {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_ranks_add_one_new_collection_race_free(backend: str, tmp_path: Path) -> None:
    subjects = [f"s{i}" for i in range(6)]
    base = {s: image(i) for i, s in enumerate(subjects)}
    for k in range(ROUNDS):
        RadiObject.from_images(str(tmp_path / f"r{k}"), {"T1w": base}, options=WriteOptions(backend=backend))
    world = 3
    barrier = mp.get_context("spawn").Barrier(world)
    _run(_rank_writes, [(str(tmp_path), backend, r, world, subjects, barrier) for r in range(world)])
    for k in range(ROUNDS):
        coll = RadiObject(str(tmp_path / f"r{k}"))["pred"]
        assert sorted(coll.obs_ids) == subjects, f"round {k}"  # each subject exactly once
        for sid in subjects:
            np.testing.assert_array_equal(coll.loc[sid].to_numpy(), image(int(sid[1:]) + 100 * k).array)


# ------------------------------------------------------------- GridAggregator from N ranks
def _rank_predicts(store: str, rank: int, world: int, rounds: int, barrier, queue) -> None:
    try:
        from radiobject.ml.aggregate import GridAggregator
        from radiobject.ml.loaders import create_inference_dataloader

        for k in range(rounds):
            radi = RadiObject(f"{store}{k}")
            loader = create_inference_dataloader(
                radi, modalities="T1w", patch_size=(6, 6, 6), overlap=0.5, batch_size=4, world_size=world, rank=rank
            )
            barrier.wait(60)
            agg = GridAggregator(radi, loader.dataset, "pred", exist_ok=True)
            for batch in loader:
                agg.add_batch(batch["image"] * 3.0 + 1.0, batch)
            agg.finalize()
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"ERROR rank {rank}: {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_grid_aggregator_from_ranks_equals_single_process(backend: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    n = 5
    imgs = {f"sub-{i}": image(i, SHAPE, "float32") for i in range(n)}
    rounds = ROUNDS
    for k in [*range(rounds), "single"]:
        RadiObject.from_images(f"{tmp_path}/s{k}", {"T1w": imgs}, options=WriteOptions(backend=backend))
    from radiobject.ml.aggregate import GridAggregator
    from radiobject.ml.loaders import create_inference_dataloader

    ref_radi = RadiObject(f"{tmp_path}/ssingle")
    loader = create_inference_dataloader(ref_radi, modalities="T1w", patch_size=(6, 6, 6), overlap=0.5, batch_size=4)
    agg = GridAggregator(ref_radi, loader.dataset, "pred")
    for batch in loader:
        agg.add_batch(batch["image"] * 3.0 + 1.0, batch)
    ref = agg.finalize()
    world = 3
    barrier = mp.get_context("spawn").Barrier(world)
    _run(_rank_predicts, [(f"{tmp_path}/s", r, world, rounds, barrier) for r in range(world)], timeout=600)
    for k in range(rounds):
        coll = RadiObject(f"{tmp_path}/s{k}")["pred"]
        assert sorted(coll.obs_ids) == sorted(imgs), f"round {k}"
        for sid in imgs:
            np.testing.assert_array_equal(coll.loc[sid].to_numpy(), ref.loc[sid].to_numpy())  # voxel for voxel


# ------------------------------------------------------------ two ingests into one new store
def _ingest(root: str, backend: str, order: int, barrier, queue) -> None:
    try:
        imgs = {f"s{i}": image(i) for i in range(8)}
        if order:
            imgs = dict(reversed(list(imgs.items())))
        for k in range(ROUNDS):
            barrier.wait(60)
            radi = RadiObject.create(f"{root}/r{k}", options=WriteOptions(backend=backend), exist_ok=True)
            items = [IngestItem(s, s, img) for s, img in imgs.items()]
            radi.add_collection("T1w", items, options=WriteOptions(backend=backend, commit_every=2), skip_existing=True)
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"ERROR ingest {order}: {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_two_ingests_into_one_new_store(backend: str, tmp_path: Path) -> None:
    barrier = mp.get_context("spawn").Barrier(2)
    _run(_ingest, [(str(tmp_path), backend, o, barrier) for o in (0, 1)])
    for k in range(ROUNDS):
        coll = RadiObject(str(tmp_path / f"r{k}")).T1w
        assert sorted(coll.obs_ids) == [f"s{i}" for i in range(8)], f"round {k}"
        for i in range(8):
            np.testing.assert_array_equal(coll.loc[f"s{i}"].to_numpy(), image(i).array)


# ------------------------------------------------ a reader polling while a writer re-writes
def _rewriter(uri: str, rewrites: int, started, queue) -> None:
    try:
        coll = VolumeCollection(uri)
        started.set()
        for v in range(2, rewrites + 2):
            coll.replace("s0", _const(v))
            coll.append(_const(1000 + v), f"x{v}")  # appends as well, then compaction
            if v % 3 == 0:
                coll.compact()
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"ERROR writer: {type(exc).__name__}: {exc}")


def _poll(uri: str, started, queue) -> None:
    try:
        started.wait(60)
        seen, reads, t_end = set(), 0, time.monotonic() + 60
        while time.monotonic() < t_end:
            coll = VolumeCollection(uri)  # a fresh open each time: catalog listing + fragment reads
            data = coll.loc["s0"].to_numpy()
            vals = np.unique(data)
            if len(vals) != 1 or vals[0] < 1:
                raise AssertionError(f"torn or zero read: values {vals[:5]}")
            seen.add(int(vals[0]))
            ids = coll.obs_ids
            if len(ids) != len(set(ids)) or "s0" not in ids:
                raise AssertionError(f"inconsistent catalog {ids}")
            reads += 1
            if reads > 5 and len(seen) > 3 and (max(seen) >= 25 or reads > 400):
                break
        queue.put(("reads", reads, sorted(seen)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"ERROR reader: {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_reader_polling_while_writer_rewrites_and_compacts(backend: str, tmp_path: Path) -> None:
    uri = str(tmp_path / "c")
    VolumeCollection.from_images(uri, {"s0": _const(1)}, options=WriteOptions(backend=backend))
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_rewriter, args=(uri, 25, started, queue)),
        ctx.Process(target=_poll, args=(uri, started, queue)),
        ctx.Process(target=_poll, args=(uri, started, queue)),
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert not [r for r in results if isinstance(r, str) and r.startswith("ERROR")], results
    polls = [r for r in results if isinstance(r, tuple)]
    assert len(polls) == 2 and all(r[1] > 0 for r in polls)
    assert any(len(r[2]) > 1 for r in polls), polls  # the readers did overlap the rewrites
    final = VolumeCollection(uri)
    np.testing.assert_array_equal(final.loc["s0"].to_numpy(), _const(26).array)
    assert len(final) == 26


# ------------------------------------------------- two cohort ingests (run_ingest) at once
def _run_ingest(root: str, manifest: str, participants: str, rounds: int, barrier, queue) -> None:
    try:
        from radiobject.ingest import plan_from_manifest, run_ingest

        for k in range(rounds):
            barrier.wait(60)
            rep = run_ingest(
                f"{root}/r{k}", plan_from_manifest(manifest, subjects=participants), options=WriteOptions(workers=2)
            )
            if not rep.ok:
                queue.put(
                    f"ERROR round {k}: {rep.aborted} {[r.error for c in rep.collections.values() for r in c.failed]}"
                )
                return
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"ERROR ingest: {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_two_cohort_ingests_into_one_new_store_equal_a_serial_one(tmp_path: Path) -> None:
    from radiobject.ingest import make_sample_cohort, plan_from_manifest, run_ingest

    cohort = make_sample_cohort(tmp_path / "cohort", 5, (16, 18, 14))
    serial = tmp_path / "serial"
    run_ingest(str(serial), plan_from_manifest(cohort.manifest, subjects=cohort.participants))
    rounds = 6
    barrier = mp.get_context("spawn").Barrier(2)
    _run(_run_ingest, [(str(tmp_path), cohort.manifest, cohort.participants, rounds, barrier)] * 2, timeout=600)
    ref = RadiObject(str(serial))
    for k in range(rounds):
        radi = RadiObject(str(tmp_path / f"r{k}"))
        assert radi.collection_names == ref.collection_names and radi.obs_subject_ids == ref.obs_subject_ids
        for name in ref.collection_names:
            assert sorted(radi[name].obs_ids) == sorted(ref[name].obs_ids), f"round {k} {name}"
            for oid in ref[name].obs_ids:
                np.testing.assert_array_equal(radi[name].loc[oid].to_numpy(), ref[name].loc[oid].to_numpy())
