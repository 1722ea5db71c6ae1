"""DDP training on a RadiObject store with torchrun (CPU: gloo, GPU: nccl).

    torchrun --nproc_per_node=2 examples/train_ddp.py --store /tmp/sample_store

    # two nodes (run one agent per node; here both on one host, rendezvous on 127.0.0.1:29500)
    torchrun --nnodes=2 --nproc-per-node=1 --rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:29500 \
        --rdzv-id=job1 examples/train_ddp.py --store /tmp/sample_store --cache shared_memory

Creates a small synthetic store at --store when none exists (on rank 0's machine: with nodes on
several machines the store must already exist where every node can read it). Each rank reads its
own shard of random patches (RadiSampler: by rank, then by worker), every epoch gets a new order
and new patches (set_epoch), and --resume continues mid-epoch from the saved loader state, also on
another number of processes. ``--cache shared_memory`` keeps one cache per node in /dev/shm, shared
by the node's ranks. ``--record DIR`` writes what each rank trained on to ``DIR/rank-<rank>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout as written

from radiobject import RadiObject
from radiobject.ml.distributed import create_distributed_dataloader, set_epoch


class TinyUNet3D(nn.Module):
    """A very small 3D encoder-decoder (enough to exercise the loop)."""

    def __init__(self, in_ch: int, classes: int, width: int = 8) -> None:
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv3d(in_ch, width, 3, padding=1), nn.ReLU(), nn.Conv3d(width, width, 3, padding=1, stride=2), nn.ReLU()
        )
        self.dec = nn.Sequential(nn.ConvTranspose3d(width, width, 2, stride=2), nn.ReLU(), nn.Conv3d(width, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


def loader_options(patch: int, batch_size: int, *, workers: int = 0, seed: int = 0) -> dict:
    """The training loader's settings (the tests rebuild the same loader in one process to compare)."""
    return {
        "modalities": ["T1w", "FLAIR"],
        "label": "seg",
        "patch_size": (patch,) * 3,
        "batch_size": batch_size,
        "num_workers": workers,
        "seed": seed,
        "sampler": "foreground",
        "timeout": 120 if workers else 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0 = whole epochs)")
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="none", choices=("none", "in_memory", "shared_memory"))
    ap.add_argument("--cache-bytes", type=int, default=256 << 20, help="per node for shared_memory")
    ap.add_argument("--record", default="", help="directory: each rank writes rank-<rank>.json (samples trained on)")
    args = ap.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if rank == 0 and not Path(args.store, "radiobject.json").exists():
        from examples.make_sample_store import make_sample_store

        make_sample_store(args.store)
    dist.barrier()

    radi = RadiObject(args.store)
    loader = create_distributed_dataloader(
        radi,
        rank=rank,
        world_size=world,
        stage="train",
        device=device,
        **loader_options(args.patch, args.batch_size, workers=args.workers, seed=args.seed),
        cache_strategy=args.cache,  # shared_memory: one cache per node (all ranks make this call)
        cache_bytes=args.cache_bytes,
    )
    model = nn.parallel.DistributedDataParallel(TinyUNet3D(2, 3).to(device))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start_epoch, resumed = 0, False
    if args.resume and args.checkpoint and Path(args.checkpoint).exists():
        ckpt = torch.load(args.checkpoint, map_location=device, weights_only=False)
        model.module.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        loader.load_state_dict(ckpt["loader"])  # mid-epoch; works with another world size too
        start_epoch, resumed = ckpt["loader"]["epoch"], True

    steps, patches, t0 = 0, 0, time.perf_counter()
    seen: list[list] = []  # [epoch, subject, patch origin, sample index, first T1w voxel] per trained sample
    for epoch in range(start_epoch, args.epochs):
        if not (resumed and epoch == start_epoch):  # a resumed epoch continues where it stopped
            set_epoch(loader, epoch)
        loss = None  # a resumed epoch that had already ended yields no batch
        for batch in loader:
            logits = model(batch["image"])
            loss = F.cross_entropy(logits, batch["label"][:, 0].long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            patches += batch["image"].shape[0]
            if args.record:
                for k, sid in enumerate(batch["subject_id"]):
                    origin = batch["patch_origin"][k].tolist()
                    seen.append([epoch, sid, origin, int(batch["index"][k]), float(batch["image"][k, 0, 0, 0, 0])])
            if args.steps and steps >= args.steps:
                break
        if rank == 0:
            print(f"epoch {epoch}: loss {'-' if loss is None else f'{loss.item():.4f}'}", flush=True)
        if args.steps and steps >= args.steps:
            break
    elapsed = time.perf_counter() - t0
    total = torch.tensor([patches], dtype=torch.float64)
    dist.all_reduce(total)
    if args.checkpoint:
        state = loader.state_dict()
        if rank == 0:
            torch.save(
                {"model": model.module.state_dict(), "optim": opt.state_dict(), "loader": state}, args.checkpoint
            )
    if rank == 0:
        print(
            f"world {world}: {steps} steps, {int(total.item())} patches in {elapsed:.1f} s: "
            f"{total.item() / elapsed:.1f} patches/s",
            flush=True,
        )
    if args.record:
        _record(Path(args.record), rank, world, seen, loader)
    dist.barrier()  # the node's shared cache is removed when its leader exits: let every rank finish first
    dist.destroy_process_group()


def _record(out: Path, rank: int, world: int, seen: list[list], loader: object) -> None:
    """What this rank trained on, where it ran (torchrun's variables) and its cache, as ``out/rank-<rank>.json``."""
    cache = loader.dataset.reader.cache  # type: ignore[attr-defined]
    env = ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "RANK", "WORLD_SIZE")
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "rank": rank,
        "world": world,
        "pid": os.getpid(),
        "env": {k: os.environ.get(k) for k in env},
        "samples": seen,
        "cache": {
            "type": type(cache).__name__,
            "path": str(getattr(cache, "path", "")),
            "hits": int(getattr(cache, "hits", 0)),
            "misses": int(getattr(cache, "misses", 0)),
        },
    }
    (out / f"rank-{rank}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
