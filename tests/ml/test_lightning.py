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

    dm = RadiObjectDataModule(
        store,
        modalities="T1w",
        label="seg",
        patch_size=(8, 8, 8),
        batch_size=2,
        train_subjects=[f"sub-{i:02d}" for i in range(5)],
    )
    model = _Model()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(ckpt_dir),
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True)],
    )
    trainer.fit(model, datamodule=dm, ckpt_path=resume)
    return model.seen


def test_datamodule_resumes_mid_epoch_exactly(tmp_path):
    store = make_store(tmp_path / "store", "zarr", n=5, shape=SHAPE)
    ref = _fit(store, tmp_path / "ref", max_steps=9)  # 3 batches per epoch: [2, 2, 1]
    first = _fit(store, tmp_path / "ck", max_steps=4)  # stops after batch 1 of epoch 1
    ckpt = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=False)
    assert ckpt["RadiObjectDataModule"]["train"]["segments"] == [[1, 2]]  # trained batches, not prefetched ones
    rest = _fit(store, tmp_path / "ck2", max_steps=9, resume=str(tmp_path / "ck" / "last.ckpt"))
    assert first == ref[:4]
    # the epoch's remainder, then the next data epoch: exactly the uninterrupted run (a max_steps stop)
    assert rest == ref[4:]
    for epoch in (0, 1, 2):
        assert sorted(i for e, ids in ref if e == epoch for i in ids) == [f"sub-{i:02d}" for i in range(5)]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_lightning_ddp_two_processes_runs_the_example(tmp_path):
    store = tmp_path / "store"
    ckpt = tmp_path / "ckpt"
    cmd = [
        sys.executable,
        str(REPO / "examples" / "train_lightning.py"),
        "--store",
        str(store),
        "--devices",
        "2",
        "--max-steps",
        "5",
        "--patch",
        "16",
        "--ckpt-dir",
        str(ckpt),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "lightning: world 2, 5 steps" in out.stdout and "patches/s" in out.stdout
    state = torch.load(ckpt / "last.ckpt", weights_only=False)["RadiObjectDataModule"]
    assert state["train"]["world_size"] == 2 and state["train"]["num_samples"] == 6
    out = subprocess.run(
        # the same settings (a resume state of another patch size is refused: ResumeStateError)
        cmd[:-6] + ["--patch", "16", "--max-steps", "7", "--ckpt-dir", str(ckpt), "--resume", str(ckpt / "last.ckpt")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(tmp_path),
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "lightning: world 2, 7 steps" in out.stdout


def _preempt_run(store, ckpt, logs, devices, max_steps, *, kill_at=None, resume=None):
    import os
    import signal

    cmd = [
        sys.executable,
        str(REPO / "tests" / "ml" / "_lightning_preempt.py"),
        store.uri,
        str(ckpt),
        str(logs),
        str(devices),
        str(max_steps),
    ]
    if kill_at is not None:
        cmd += ["--kill-at", str(kill_at)]
    if resume is not None:
        cmd += ["--resume", str(resume)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(REPO), start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the Lightning run did not finish in 240 s")
    return proc.returncode, out


def _logged(logs, below_step=None):
    import json

    rows = [json.loads(line) for f in sorted(Path(logs).glob("rank*.jsonl")) for line in f.read_text().splitlines()]
    return [r for r in rows if below_step is None or r["step"] < below_step]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("resume_devices", [2, 1])
def test_ddp_preempted_and_resumed_trains_each_sample_once_per_epoch(tmp_path, resume_devices):
    """Kill a real 2-process DDP Trainer (gloo) mid-epoch with SIGKILL; resume it (same or smaller world)."""
    import signal
    from collections import Counter

    store = make_store(tmp_path / "store", "zarr", n=6, shape=(10, 10, 8))  # 12 samples: 6 subjects x 2 patches
    ckpt, logs1, logs2 = tmp_path / "ckpt", tmp_path / "logs1", tmp_path / "logs2"
    logs1.mkdir()
    logs2.mkdir()
    kill_at, max_steps = 9, 16  # 6 steps per epoch on 2 ranks: killed at step 3 of epoch 1
    rc, out = _preempt_run(store, ckpt, logs1, 2, max_steps, kill_at=kill_at)
    assert rc == -signal.SIGKILL, out[-3000:]  # really preempted, not finished
    ckpt_state = torch.load(ckpt / "last.ckpt", weights_only=False)
    assert ckpt_state["global_step"] == kill_at
    train_state = ckpt_state["RadiObjectDataModule"]["train"]
    assert train_state["epoch"] == 1 and train_state["segments"] == [[2, 3]] and train_state["sample_in_epoch"] == 6
    before = _logged(logs1, below_step=kill_at)
    assert len(before) == kill_at * 2
    rc, out = _preempt_run(store, ckpt, logs2, resume_devices, max_steps, resume=ckpt / "last.ckpt")
    assert rc == 0, out[-4000:]
    after = _logged(logs2)
    rows = before + after
    per_epoch: dict[int, Counter] = {}
    for r in rows:
        per_epoch.setdefault(r["epoch"], Counter())[r["index"]] += 1
    for epoch in (0, 1):  # whole epochs: every sample exactly once, across ranks and the restart
        assert per_epoch[epoch] == Counter({i: 1 for i in range(12)}), (epoch, per_epoch[epoch])
    assert {r["epoch"] for r in after} >= {1, 2}  # the remainder of epoch 1, then the next data epoch
    assert max(per_epoch[2].values()) == 1  # the epoch in progress at max_steps repeats nothing
    assert after[0]["step"] == kill_at
