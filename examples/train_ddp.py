"""DDP training on a RadiObject store with torchrun (CPU: gloo, GPU: nccl).

    torchrun --nproc_per_node=2 examples/train_ddp.py --store /tmp/sample_store

Creates a small synthetic store at --store when none exists. Each rank reads its own shard of
random patches (RadiSampler: by rank, then by worker), every epoch gets a new order and new
patches (set_epoch), and --resume continues mid-epoch from the saved loader state, also on
another number of processes.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0 = whole epochs)")
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--resume", action="store_true")
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
        modalities=["T1w", "FLAIR"],
        label="seg",
        patch_size=(args.patch,) * 3,
        batch_size=args.batch_size,
        num_workers=args.workers,
        seed=0,
        sampler="foreground",
        device=device,
        timeout=120 if args.workers else 0,
    )
    model = nn.parallel.DistributedDataParallel(TinyUNet3D(2, 3).to(device))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start_epoch = 0
    if args.resume and args.checkpoint and Path(args.checkpoint).exists():
        ckpt = torch.load(args.checkpoint, map_location=device, weights_only=False)
        model.module.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        loader.load_state_dict(ckpt["loader"])  # mid-epoch; works with another world size too
        start_epoch = ckpt["loader"]["epoch"]

    steps, patches, t0 = 0, 0, time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        if not (args.resume and epoch == start_epoch):
            set_epoch(loader, epoch)
        for batch in loader:
            logits = model(batch["image"])
            loss = F.cross_entropy(logits, batch["label"][:, 0].long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            patches += batch["image"].shape[0]
            if args.steps and steps >= args.steps:
                break
        if rank == 0:
            print(f"epoch {epoch}: loss {loss.item():.4f}", flush=True)
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
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
