"""A few training steps of a tiny 3D segmentation model through the ml loaders.

    python examples/quickstart_train.py --store out/store.radi [--steps 12] [--workers 2]

Prints the loss and the patches/s the loader delivered (data loading + the model step).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from radiobject import RadiObject
from radiobject.ml import CacheStrategy, create_training_dataloader, set_epoch


def tiny_unet(in_channels: int, classes: int) -> nn.Module:
    """Two conv blocks and a 1x1x1 head: enough to show the data path, not to win a challenge."""
    return nn.Sequential(
        nn.Conv3d(in_channels, 8, 3, padding=1),
        nn.InstanceNorm3d(8),
        nn.ReLU(),
        nn.Conv3d(8, 8, 3, padding=1),
        nn.InstanceNorm3d(8),
        nn.ReLU(),
        nn.Conv3d(8, classes, 1),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--patch", type=int, default=32)
    args = ap.parse_args()

    radi = RadiObject(args.store)
    images = [c for c in radi.collection_names if c != "seg"]
    loader = create_training_dataloader(
        radi,
        modalities=images,
        label="seg",
        patch_size=(args.patch,) * 3,
        batch_size=2,
        num_workers=args.workers,
        cache_strategy=CacheStrategy.SHARED_MEMORY,
        cache_bytes=256 << 20,
        sampler="foreground",
        foreground_prob=0.5,
        patches_per_volume=2,
        seed=0,
    )
    model = tiny_unet(len(images), 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    steps, patches, t0, epoch = 0, 0, time.perf_counter(), 0
    while steps < args.steps:
        set_epoch(loader, epoch)
        for batch in loader:
            image = batch["image"].float()
            image = (image - image.mean(dim=(2, 3, 4), keepdim=True)) / (image.std(dim=(2, 3, 4), keepdim=True) + 1e-6)
            target = (batch["label"][:, 0] > 0).long()
            loss = loss_fn(model(image), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps, patches = steps + 1, patches + image.shape[0]
            print(f"epoch {epoch} step {steps:3d}  loss {loss.item():.4f}  subjects {list(batch['subject_id'])}")
            if steps >= args.steps:
                break
        epoch += 1
    seconds = time.perf_counter() - t0
    print(
        f"{patches} patches of {args.patch}^3 x {len(images)} channels in {seconds:.2f} s: "
        f"{patches / seconds:.1f} patches/s (loading + model step, {args.workers} workers)"
    )


if __name__ == "__main__":
    main()
