"""A Lightning DDP run that logs every trained sample and can be preempted (SIGKILL) at a given step.

    python tests/ml/_lightning_preempt.py STORE CKPT_DIR LOG_DIR DEVICES MAX_STEPS [--kill-at K] [--resume CKPT]

Each rank appends ``{"step", "epoch", "rank", "index"}`` lines to ``LOG_DIR/rank<r>.jsonl`` from
``training_step``. A checkpoint is written after every step (``every_n_train_steps=1``). With
``--kill-at K`` rank 0 kills the whole process group (every rank, the launcher too) right after the
checkpoint of global step ``K`` (before step ``K + 1`` trains): a preemption.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from radiobject.ml.lightning import RadiObjectDataModule


class Model(pl.LightningModule):
    def __init__(self, log_dir: str) -> None:
        super().__init__()
        self.net = torch.nn.Conv3d(1, 3, 3, padding=1)
        self.log_dir = log_dir

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        path = Path(self.log_dir, f"rank{self.global_rank}.jsonl")
        with path.open("a") as f:
            for idx in batch["index"].tolist():
                f.write(
                    json.dumps(
                        {
                            "step": int(self.global_step),
                            "epoch": int(self.current_epoch),
                            "rank": int(self.global_rank),
                            "index": int(idx),
                        }
                    )
                    + "\n"
                )
            f.flush()
            os.fsync(f.fileno())
        return torch.nn.functional.cross_entropy(self.net(batch["image"]), batch["label"][:, 0].long())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Preempt(pl.Callback):
    """Kills every process of the run once ``at`` steps are trained and checkpointed.

    Lightning runs checkpoint callbacks last in ``on_train_batch_end``, so the kill comes at the start
    of the next batch (before its ``training_step``).
    """

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.at:
            trainer.strategy.barrier()  # every rank is here: step `at` is trained and its checkpoint written
            if trainer.global_rank == 0:
                os.killpg(os.getpgid(0), signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("ckpt_dir")
    ap.add_argument("log_dir")
    ap.add_argument("devices", type=int)
    ap.add_argument("max_steps", type=int)
    ap.add_argument("--kill-at", type=int, default=None)
    ap.add_argument("--resume", default=None)
    args = ap.parse_args()
    dm = RadiObjectDataModule(
        args.store, modalities="T1w", label="seg", patch_size=(4, 4, 4), batch_size=1, patches_per_volume=2, seed=5
    )
    checkpoint = pl.callbacks.ModelCheckpoint(
        dirpath=args.ckpt_dir, save_last=True, every_n_train_steps=1, save_top_k=0
    )
    callbacks: list[pl.Callback] = [checkpoint]
    if args.kill_at is not None:
        callbacks.append(Preempt(args.kill_at))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        max_steps=args.max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=args.ckpt_dir,
        callbacks=callbacks,
        num_sanity_val_steps=0,
    )
    trainer.fit(Model(args.log_dir), datamodule=dm, ckpt_path=args.resume)


if __name__ == "__main__":
    main()
