"""Out-of-core trials, each run in a subprocess of its own (``python -m tests.scale._trials NAME ARGS``).

A trial sets a real address-space limit (``RLIMIT_AS``: what the process has mapped now plus a
headroom) before it reads, so whatever the code under test allocates beyond it fails as it would
in a small container, and prints one JSON line of measurements for the test to check.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np


def status_bytes(key: str, pid: str = "self") -> int:
    """``VmRSS`` / ``VmSize`` / ``VmHWM`` of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def limit_address_space(headroom: int) -> None:
    """Let this process map at most ``headroom`` bytes more than it has mapped now."""
    limit = status_bytes("VmSize") + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def write_cohort(root: str, n: int, side: int, dtype: str) -> None:
    """``n`` smooth volumes ``side``³ (collection ``T1w``), values coding subject and position."""
    from radiobject import RadiObject
    from radiobject.formats.image import ImageData

    shape = (side, side, side)
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    base = (x * 7 + y * 3 + z) % 251
    images = {f"s{i:04d}": ImageData((base + i).astype(dtype), np.eye(4), {}, f"syn/{i}") for i in range(n)}
    RadiObject.from_images(root, {"T1w": images})


def write_big(root: str, shape: tuple[int, ...]) -> None:
    """One uint16 volume of ``shape`` (subject ``big``, collection ``CT``); compresses well."""
    from radiobject import RadiObject
    from radiobject.formats.image import ImageData

    data = np.zeros(shape, np.uint16)
    data[::7] = 3
    data[:, ::5] += 1
    RadiObject.from_images(root, {"CT": {"big": ImageData(data, np.eye(4), {}, "synthetic")}})


def big_volume(root: str, headroom: int, cache_dir: str) -> dict[str, Any]:
    """Patches of a volume larger than the memory left, through each cache; then a whole-volume read."""
    import torch  # noqa: F401 - imported before the limit, as a training script does

    from radiobject import RadiObject
    from radiobject.ml import create_training_dataloader

    radi = RadiObject(root)
    loaders = {
        name: create_training_dataloader(
            radi, modalities="CT", patch_size=(64, 64, 64), batch_size=2, patches_per_volume=4, **kw
        )
        for name, kw in {
            "none": {},
            "in_memory": {"cache_strategy": "in_memory", "cache_bytes": 8 << 30},
            "disk": {"cache_strategy": "disk", "cache_bytes": 8 << 30, "cache_path": cache_dir},
        }.items()
    }
    whole = create_training_dataloader(radi, modalities="CT", patch_size=None, batch_size=1)
    limit_address_space(headroom)
    out: dict[str, Any] = {}
    for name, loader in loaders.items():
        try:
            shapes = [tuple(b["image"].shape) for b in loader]
            out[name] = {"ok": True, "batches": len(shapes), "shape": list(shapes[0])}
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            out[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]}
    try:
        next(iter(whole))
        out["whole"] = {"ok": True}
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        out["whole"] = {"ok": False, "types": [c.__name__ for c in type(exc).__mro__], "error": str(exc)[:4000]}
    return out


def mapped_cohort(root: str, headroom: int, cache_dir: str, budget: int, epochs: int) -> dict[str, Any]:
    """A disk cache holding whole volumes of a cohort larger than the address space left."""
    import torch  # noqa: F401

    from radiobject import RadiObject
    from radiobject.ml import create_training_dataloader, set_epoch

    radi = RadiObject(root)
    next(iter(create_training_dataloader(radi, modalities="T1w", patch_size=(8, 8, 8))))  # the engine's threads
    limit_address_space(headroom)
    loader = create_training_dataloader(
        radi,
        modalities="T1w",
        patch_size=(32, 32, 32),
        batch_size=4,
        cache_strategy="disk",
        cache_bytes=budget,
        cache_path=cache_dir,
    )
    cache = loader.dataset.reader.cache
    rss: list[int] = []
    try:
        for epoch in range(epochs):
            set_epoch(loader, epoch)
            for _ in loader:
                pass
            rss.append(status_bytes("VmRSS"))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400], "epochs_done": len(rss)}
    return {
        "ok": True,
        "rss": rss,
        "mapped": cache._mapped,
        "map_limit": cache._map_budget(),
        "whole": loader.dataset.reader._local()["whole"],
        "cache_bytes": cache.nbytes,
    }


def epochs(root: str, strategy: str, budget: int, workers: int, n_epochs: int, cache_dir: str) -> dict[str, Any]:
    """RSS of the workers and bytes of the cache after each epoch (a cohort larger than the budget)."""
    import psutil

    from radiobject import RadiObject
    from radiobject.ml import create_training_dataloader, set_epoch

    kw: dict[str, Any] = {"cache_strategy": strategy, "cache_bytes": budget}
    if strategy == "disk":
        kw["cache_path"] = cache_dir
    loader = create_training_dataloader(
        RadiObject(root),
        modalities="T1w",
        patch_size=(32, 32, 32),
        batch_size=4,
        num_workers=workers,
        worker_mode="processes" if workers else "auto",
        persistent_workers=bool(workers),
        **kw,
    )
    cache = loader.dataset.reader.cache
    me = psutil.Process()
    per_epoch: list[dict[str, Any]] = []
    for epoch in range(n_epochs):
        set_epoch(loader, epoch)
        for _ in loader:
            pass
        kids = [c for c in me.children(recursive=True) if c.is_running()]
        held = cache.nbytes if strategy in ("disk", "shared_memory") else None
        files = sum(f.stat().st_size for f in Path(cache.path).rglob("*.rce")) if held is not None else None
        per_epoch.append(
            {
                "rss": me.memory_info().rss,
                "workers": sorted(c.memory_info().rss for c in kids)[-workers:] if workers else [],
                "cache_bytes": held,
                "files": files,
            }
        )
    return {"epochs": per_epoch, "budget": budget}


def write_catalog(root: str, n: int) -> None:
    """A store whose catalogs list ``n`` subjects in ``T1w`` and ``seg``; only ``s0``'s volumes exist
    (the other rows copy its row under new IDs: enough for catalog and reader-building work)."""
    import pandas as pd

    from radiobject import RadiObject
    from radiobject.formats.image import ImageData
    from radiobject.storage.tables import FragmentTable

    image = ImageData(np.zeros((8, 8, 8), np.float32), np.eye(4), {}, "synthetic")
    RadiObject.from_images(root, {"T1w": {"s0": image}, "seg": {"s0": image}})
    sids = [f"s{i}" for i in range(1, n)]
    for table, key, coll in (("obs_meta", "obs_subject_id", ""), ("collections/T1w/obs", "obs_id", "T1w")) + (
        ("collections/seg/obs", "obs_id", "seg"),
    ):
        frag = FragmentTable(f"{root}/{table}", key)
        first = frag.read().iloc[0]
        rows = pd.DataFrame({c: [first[c]] * (n - 1) for c in first.index})
        rows["obs_subject_id"] = sids
        if coll:
            rows["obs_id"] = [f"{s}_{coll}" for s in sids]
        frag.append(rows)


def catalog(root: str, reader_file: str) -> dict[str, Any]:
    """Memory of a worker reading one patch, and of repeated ``loc`` / ``iloc`` lookups."""
    import gc
    import pickle

    from radiobject import RadiObject

    reader = pickle.loads(Path(reader_file).read_bytes())
    before = status_bytes("VmRSS")
    reader.read_patch(0, (0, 0, 0), (4, 4, 4))
    worker = status_bytes("VmRSS") - before
    radi = RadiObject(root)
    n = len(radi)
    radi.loc["s5"].obs_meta  # noqa: B018 - every table loaded once
    radi.loc["s5"]["T1w"].obs  # noqa: B018
    sizes = []
    for rounds in (200, 2000):
        for i in range(rounds):
            view = radi.loc[f"s{(i * 7) % n}"]
            view["T1w"].volume(view["T1w"].obs_ids[0])
            radi.iloc[(i * 11) % n]
        gc.collect()
        sizes.append(status_bytes("VmRSS"))
    return {"worker_rss": worker, "lookup_growth": sizes[1] - sizes[0]}


def main(argv: list[str]) -> None:
    name, *args = argv
    if name == "write_cohort":
        write_cohort(args[0], int(args[1]), int(args[2]), args[3])
        result: dict[str, Any] = {"ok": True}
    elif name == "write_big":
        write_big(args[0], tuple(int(a) for a in args[1:]))
        result = {"ok": True}
    elif name == "big_volume":
        result = big_volume(args[0], int(args[1]), args[2])
    elif name == "mapped_cohort":
        result = mapped_cohort(args[0], int(args[1]), args[2], int(args[3]), int(args[4]))
    elif name == "write_catalog":
        write_catalog(args[0], int(args[1]))
        result = {"ok": True}
    elif name == "catalog":
        result = catalog(args[0], args[1])
    elif name == "epochs":
        result = epochs(args[0], args[1], int(args[2]), int(args[3]), int(args[4]), args[5])
    else:
        raise SystemExit(f"unknown trial {name!r}")
    print("RESULT " + json.dumps(result), flush=True)
    os._exit(0)  # no teardown of worker pools / tensorstore under the limit


if __name__ == "__main__":
    main(sys.argv[1:])
