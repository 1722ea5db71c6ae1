"""Out-of-core trials in subprocesses under a real address-space limit (``RLIMIT_AS``): a volume
larger than the memory left, a disk cache of whole volumes larger than the address space left, and
several epochs over a cohort larger than each cache's budget (RSS flat, budgets held)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20


def trial(*args: object, timeout: float = 150) -> dict[str, Any]:
    env = {
        **os.environ,
        "MALLOC_ARENA_MAX": "2",  # glibc's per-thread arenas reserve 64 MiB of address space each
        "RADIOBJECT_CHUNK_CACHE_BYTES": str(8 * MiB),  # tensorstore's pool: full within the first epochs
    }
    out = subprocess.run(
        [sys.executable, "-m", "tests.scale._trials", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, f"trial {args[0]} failed (rc {out.returncode}):\n{out.stderr[-3000:]}"
    return dict(json.loads(lines[-1][len("RESULT ") :]))


@pytest.mark.slow
def test_patches_of_a_volume_larger_than_the_memory_left(tmp_path: Path) -> None:
    root = tmp_path / "big"
    trial("write_big", root, 1024, 1024, 300)  # 600 MiB decoded
    got = trial("big_volume", root, 400 * MiB, tmp_path / "cache")
    for name in ("none", "in_memory", "disk"):  # whole-volume caching would need 600 MiB: chunks instead
        assert got[name]["ok"], (name, got[name])
        assert got[name]["batches"] == 2 and got[name]["shape"] == [2, 1, 64, 64, 64]
    whole = got["whole"]  # typed, not an OOM: a SampleError that is also an OutputTooLargeError
    assert not whole["ok"] and {"SampleError", "OutputTooLargeError"} <= set(whole["types"]), whole
    assert "'big'" in whole["error"] and "needs more than" in whole["error"], whole


@pytest.mark.slow
def test_a_disk_cache_of_whole_volumes_larger_than_the_address_space_left(tmp_path: Path) -> None:
    root = tmp_path / "cohort"
    trial("write_cohort", root, 64, 96, "float32")  # 64 x 3.4 MiB = 216 MiB decoded, whole volumes cached
    got = trial("mapped_cohort", root, 160 * MiB, tmp_path / "cache", 1 << 30, 3)
    assert got["ok"], got
    assert got["whole"] is True
    assert 0 < got["mapped"] <= got["map_limit"] <= 40 * MiB  # a quarter of the memory left, not the cache
    assert got["cache_bytes"] >= 200 * MiB  # the cohort is in the cache, only part of it mapped
    assert got["rss"][-1] - got["rss"][0] < 24 * MiB


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["in_memory", "shared_memory", "disk"])
def test_epochs_over_a_cohort_larger_than_the_cache_keep_rss_flat_and_budgets_exact(
    tmp_path: Path, strategy: str
) -> None:
    root = tmp_path / "cohort"
    trial("write_cohort", root, 96, 64, "float32")  # 96 MiB decoded, 3x the budget
    budget = 32 * MiB
    got = trial("epochs", root, strategy, budget, 2, 8, tmp_path / "cache", timeout=170)
    epochs = got["epochs"]
    if strategy != "in_memory":
        for e in epochs:  # the files, headers included, never more than the budget
            assert 0.5 * budget < e["cache_bytes"] == e["files"] <= budget, e
    for w in range(2):  # each worker: grows by its caches (pool, maps: at most the budget), then stays
        rss = [e["workers"][w] for e in epochs]
        assert rss[-1] - rss[0] < budget + 24 * MiB and rss[-1] - rss[-3] < 8 * MiB, rss
    assert epochs[-1]["rss"] - epochs[1]["rss"] < 16 * MiB


@pytest.mark.slow
def test_a_20k_subject_catalog_costs_a_worker_nothing_and_lookups_do_not_grow(tmp_path: Path) -> None:
    import pickle

    from radiobject import RadiObject
    from radiobject.ml.reader import VolumeReader

    root = tmp_path / "many"
    trial("write_catalog", root, 20_000)
    reader = VolumeReader.from_radi(RadiObject(str(root)), ["T1w"], "seg")  # 20,000 subjects, two collections
    assert len(reader) == 20_000
    (tmp_path / "reader.pkl").write_bytes(pickle.dumps(reader))
    got = trial("catalog", root, tmp_path / "reader.pkl")
    assert got["worker_rss"] < 12 * MiB, got  # the catalogs (~35 MiB at 20,000 rows x 2) are not loaded
    assert got["lookup_growth"] < 4 * MiB, got  # 2,000 more loc / iloc / volume lookups: nothing kept
