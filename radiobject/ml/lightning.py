"""``RadiObjectDataModule``: train / val / test / predict loaders for Lightning, DDP-aware, resumable.

The module holds only the store's ``StoreLocation`` and settings (picklable for any launcher) and
builds the loaders of ``ml.loaders`` with the trainer's ``global_rank`` / ``world_size``. Their
sampler is a ``DistributedSampler`` subclass, so Lightning keeps it (no replacement) and calls
``set_epoch`` every epoch. The training loader is stateful: Lightning stores its position in the
checkpoint (``"combined_loader"``) and restores it, so a run resumed mid-epoch continues with the
samples not yet trained on (counted from Lightning's own batch progress, not from batches merely
prefetched); the module's ``state_dict`` (seed, epoch position) is saved in checkpoints as well.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl

from radiobject.model.radi_object import RadiObject
from radiobject.storage.location import StoreLocation

from radiobject.ml.cache import CacheStrategy
from radiobject.ml.loaders import (
    RadiDataLoader,
    create_inference_dataloader,
    create_training_dataloader,
    create_validation_dataloader,
)

__all__ = ["RadiObjectDataModule"]


class RadiObjectDataModule(pl.LightningDataModule):
    """Loaders over one store for ``Trainer.fit`` / ``validate`` / ``test`` / ``predict``.

    Args:
        store: a ``RadiObject``, its ``StoreLocation`` or a URI.
        modalities / label: image collections (channels) and the label collection.
        train_subjects / val_subjects / test_subjects / predict_subjects: subject IDs per stage
            (``None``: all subjects for train and predict; no val / test loader).
        patch_size / patches_per_volume / sampler / foreground_prob: training patches.
        val_patch_size: validation patches (``None``: whole volumes).
        batch_size / val_batch_size / num_workers / cache_strategy / cache_bytes / seed: as in
            ``create_training_dataloader``.
        transforms / val_transforms: per-sample transforms (MONAI or TorchIO).
        inference_patch_size / overlap: grid for ``predict_dataloader``.
        loader_kwargs: passed to every loader (e.g. ``timeout``, ``multiprocessing_context``).
    """

    def __init__(
        self,
        store: RadiObject | StoreLocation | str,
        *,
        modalities: Sequence[str] | str,
        label: str | None = None,
        train_subjects: Sequence[str] | None = None,
        val_subjects: Sequence[str] | None = None,
        test_subjects: Sequence[str] | None = None,
        predict_subjects: Sequence[str] | None = None,
        patch_size: Sequence[int] | None = (64, 64, 64),
        patches_per_volume: int = 1,
        sampler: str | Mapping[int, float] = "uniform",
        foreground_prob: float = 0.5,
        val_patch_size: Sequence[int] | None = None,
        batch_size: int = 2,
        val_batch_size: int = 1,
        num_workers: int = 0,
        cache_strategy: CacheStrategy | str = CacheStrategy.NONE,
        cache_bytes: int = 2 << 30,
        seed: int = 0,
        transforms: Callable[[dict[str, Any]], Any] | None = None,
        val_transforms: Callable[[dict[str, Any]], Any] | None = None,
        inference_patch_size: Sequence[int] = (96, 96, 96),
        overlap: float = 0.25,
        shard_mode: str = "pad",
        **loader_kwargs: Any,
    ) -> None:
        super().__init__()
        if isinstance(store, RadiObject):
            self.location = store.location
        elif isinstance(store, StoreLocation):
            self.location = store
        else:
            self.location = StoreLocation(str(store))
        self.modalities = [modalities] if isinstance(modalities, str) else list(modalities)
        self.label = label
        self.subjects = {"train": train_subjects, "val": val_subjects, "test": test_subjects,
                         "predict": predict_subjects}
        self.train_kwargs: dict[str, Any] = dict(
            patch_size=patch_size, patches_per_volume=patches_per_volume, sampler=sampler,
            foreground_prob=foreground_prob, batch_size=batch_size, transforms=transforms, shard_mode=shard_mode)
        self.val_patch_size = val_patch_size
        self.val_batch_size = val_batch_size
        self.val_transforms = val_transforms
        self.common: dict[str, Any] = dict(num_workers=num_workers, cache_strategy=cache_strategy,
                                           cache_bytes=cache_bytes, **loader_kwargs)
        self.seed = int(seed)
        self.inference_patch_size = tuple(inference_patch_size)
        self.overlap = overlap
        self._radi: RadiObject | None = None
        self._train: RadiDataLoader | None = None
        self._pending_state: dict[str, Any] | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def radi(self) -> RadiObject:
        """The store, opened once per process."""
        if self._radi is None:
            self._radi = RadiObject.open(self.location)
        return self._radi

    def _topology(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _completed_steps(self) -> int | None:
        """Batches of the current epoch the model has trained on (Lightning's progress), if known."""
        trainer = getattr(self, "trainer", None)
        try:
            return int(trainer.fit_loop.epoch_loop.batch_progress.current.completed)  # type: ignore[union-attr]
        except AttributeError:
            return None

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> RadiDataLoader:
        rank, world = self._topology()
        loader = create_training_dataloader(
            self.radi, modalities=self.modalities, label=self.label, subjects=self.subjects["train"],
            seed=self.seed, rank=rank, world_size=world, **self.train_kwargs, **self.common)
        loader.steps_fn = self._completed_steps
        loader.sampler.len_counts_consumed = True  # Lightning counts batches across a mid-epoch restart
        if self._pending_state is not None:
            loader.load_state_dict(self._pending_state)
            self._pending_state = None
        self._train = loader
        return loader

    def _eval_loader(self, stage: str) -> RadiDataLoader | list[Any]:
        if self.subjects[stage] is None:
            return []
        rank, world = self._topology()
        return create_validation_dataloader(
            self.radi, modalities=self.modalities, label=self.label, subjects=self.subjects[stage],
            patch_size=self.val_patch_size, batch_size=self.val_batch_size, transforms=self.val_transforms,
            seed=self.seed, rank=rank, world_size=world, **self.common)

    def val_dataloader(self) -> RadiDataLoader | list[Any]:
        return self._eval_loader("val")

    def test_dataloader(self) -> RadiDataLoader | list[Any]:
        return self._eval_loader("test")

    def predict_dataloader(self) -> RadiDataLoader:
        rank, world = self._topology()
        common = {k: v for k, v in self.common.items() if k in ("num_workers", "cache_strategy", "cache_bytes",
                                                                  "timeout", "multiprocessing_context")}
        return create_inference_dataloader(
            self.radi, modalities=self.modalities, subjects=self.subjects["predict"],
            patch_size=self.inference_patch_size, overlap=self.overlap, batch_size=self.val_batch_size,
            rank=rank, world_size=world, **common)

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Seed and the training loader's epoch position (saved in Lightning checkpoints)."""
        state: dict[str, Any] = {"seed": self.seed}
        if self._train is not None:
            state["train"] = self._train.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the seed; the epoch position is applied to the next training loader."""
        self.seed = int(state_dict.get("seed", self.seed))
        if "train" in state_dict:
            self._pending_state = state_dict["train"]
