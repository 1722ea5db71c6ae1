"""Lightning: RadiObjectDataModule under a Trainer (1 process, exact mid-epoch resume) and a real DDP run.

The DDP run is ``examples/train_lightning.py`` as written: ``Trainer(accelerator="cpu",
strategy="ddp", devices=2, max_steps=...)`` on a tiny 3D model, launched in a subprocess (Lightning's
DDP launcher re-runs the script), bounded by a timeout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ml._stores import make_store

REPO = Path(__file__).resolve().parents[2]
SHAPE = (16, 16, 12)
pl = pytest.importorskip("lightning.pytorch")


class _Model(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Conv3d(1, 3, 3, padding=1)
        self.seen: list[tuple[int, list[str]]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, list(batch["subject_id"])))
        return torch.nn.functional.cross_entropy(self.net(batch["image"]), batch["label"][:, 0].long())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(store, ckpt_dir, max_steps, resume=None):
    from radiobject.ml.lightning import RadiObjectDataModule

    dm = RadiObjectDataModule(store, modalities="T1w", label="seg", patch_size=(8, 8, 8), batch_size=2,
                              train_subjects=[f"sub-{i:02d}" for i in range(5)])
    model = _Model()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(ckpt_dir),
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True)])
    trainer.fit(model, datamodule=dm, ckpt_path=resume)
    return model.seen


def test_datamodule_resumes_mid_epoch_exactly(tmp_path):
    store = make_store(tmp_path / "store", "zarr", n=5, shape=SHAPE)
    ref = _fit(store, tmp_path / "ref", max_steps=6)  # 3 batches per epoch: [2, 2, 1]
    first = _fit(store, tmp_path / "ck", max_steps=4)  # stops after batch 1 of epoch 1
    ckpt = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=False)
    assert ckpt["RadiObjectDataModule"]["train"]["segments"] == [[1, 2]]  # trained batches, not prefetched ones
    rest = _fit(store, tmp_path / "ck2", max_steps=6, resume=str(tmp_path / "ck" / "last.ckpt"))
    epoch1 = [ids for e, ids in ref if e == 1]
    assert first[3][1] == epoch1[0] and [ids for _, ids in rest[:2]] == epoch1[1:]  # the epoch's remainder
    sorted_ids = sorted(i for ids in epoch1 for i in ids)
    assert sorted_ids == [f"sub-{i:02d}" for i in range(5)]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_lightning_ddp_two_processes_runs_the_example(tmp_path):
    store = tmp_path / "store"
    ckpt = tmp_path / "ckpt"
    cmd = [sys.executable, str(REPO / "examples" / "train_lightning.py"), "--store", str(store), "--devices", "2",
           "--max-steps", "5", "--patch", "16", "--ckpt-dir", str(ckpt)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "lightning: world 2, 5 steps" in out.stdout and "patches/s" in out.stdout
    state = torch.load(ckpt / "last.ckpt", weights_only=False)["RadiObjectDataModule"]
    assert state["train"]["world_size"] == 2 and state["train"]["num_samples"] == 6
    out = subprocess.run(cmd[:-4] + ["--max-steps", "7", "--ckpt-dir", str(ckpt), "--resume", str(ckpt / "last.ckpt")],
                         capture_output=True, text=True, timeout=180, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "lightning: world 2, 7 steps" in out.stdout
