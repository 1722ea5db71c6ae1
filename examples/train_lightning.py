"""Lightning training on a RadiObject store (DDP on CPU or GPU).

    python examples/train_lightning.py --store /tmp/sample_store --devices 2 --max-steps 20

Creates a small synthetic store at --store when none exists. RadiObjectDataModule gives each DDP
rank its shard (Lightning keeps our DistributedSampler and calls set_epoch); the loader position
and the seed are saved in checkpoints, so --resume continues where the run stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout as written

from examples.train_ddp import TinyUNet3D
from radiobject.ml.lightning import RadiObjectDataModule


class SegModel(pl.LightningModule):
    """Tiny 3D segmentation model; logs patches/s."""

    def __init__(self, in_ch: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.net = TinyUNet3D(in_ch, classes)
        self.patches = 0
        self.t0 = 0.0

    def on_train_start(self) -> None:
        self.t0 = time.perf_counter()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self.net(batch["image"]), batch["label"][:, 0].long())
        self.patches += batch["image"].shape[0]
        self.log("train_loss", loss, prog_bar=False, batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = F.cross_entropy(self.net(batch["image"]), batch["label"][:, 0].long())
        self.log("val_loss", loss, sync_dist=True, batch_size=batch["image"].shape[0])

    def on_train_end(self) -> None:
        elapsed = time.perf_counter() - self.t0
        total = self.trainer.strategy.reduce(torch.tensor(float(self.patches)), reduce_op="sum")
        if self.trainer.is_global_zero:
            print(
                f"lightning: world {self.trainer.world_size}, {self.trainer.global_step} steps, "
                f"{int(total)} patches in {elapsed:.1f} s: {float(total) / elapsed:.1f} patches/s",
                flush=True,
            )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=20)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--ckpt-dir", default="")
    ap.add_argument("--resume", default="", help="checkpoint to resume from")
    args = ap.parse_args()

    if not Path(args.store, "radiobject.json").exists():  # only the launching process gets here first
        from examples.make_sample_store import make_sample_store

        make_sample_store(args.store)
    from radiobject import RadiObject

    subjects = RadiObject(args.store).obs_subject_ids
    val = subjects[-2:]
    dm = RadiObjectDataModule(
        args.store,
        modalities=["T1w", "FLAIR"],
        label="seg",
        train_subjects=subjects[:-2],
        val_subjects=val,
        patch_size=(args.patch,) * 3,
        val_patch_size=(args.patch,) * 3,
        batch_size=args.batch_size,
        num_workers=args.workers,
        sampler="foreground",
    )
    accel = "gpu" if torch.cuda.is_available() else "cpu"
    trainer = pl.Trainer(
        accelerator=accel,
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        max_steps=args.max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(args.ckpt_dir),
        default_root_dir=args.ckpt_dir or None,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=args.ckpt_dir, save_last=True)] if args.ckpt_dir else None,
    )
    trainer.fit(SegModel(), datamodule=dm, ckpt_path=args.resume or None)


if __name__ == "__main__":
    main()
