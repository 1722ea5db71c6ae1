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

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import lightning.pytorch as pl

from radiobject.ml.config import CacheConfig, DistributedConfig, LoaderConfig, PatchConfig, resolve
from radiobject.ml.errors import EmptySelectionError
from radiobject.ml.loaders import (
    RadiDataLoader,
    create_inference_dataloader,
    create_training_dataloader,
    create_validation_dataloader,
)
from radiobject.ml.sampler import RadiSampler
from radiobject.model.radi_object import RadiObject
from radiobject.storage.location import StoreLocation

__all__ = ["RadiObjectDataModule"]


class RadiObjectDataModule(pl.LightningDataModule):
    """Loaders over one store for ``Trainer.fit`` / ``validate`` / ``test`` / ``predict``.

    Args:
        store: a ``RadiObject``, its ``StoreLocation`` or a URI.
        modalities / label: image collections (input channels) and the label collection (the
            target; never an input channel: naming it in ``modalities`` too is a ``LoaderConfigError``).
        train_subjects / val_subjects / test_subjects / predict_subjects: subject IDs per stage
            (``None``: all subjects for train and predict; no val / test loader).
        split / fold: take train / val / test subjects from ``obs_meta`` (``split`` column values
            ``train`` / ``val`` / ``test``, or fold ``fold`` of ``fold_<k>`` / ``fold``; see
            ``ml.selection``) for the stages whose subjects are not given.
        patch / cache / loader: training settings (``ml.config``), or the flat keywords of
            ``create_training_dataloader`` (``patch_size``, ``patches_per_volume``, ``sampler``,
            ``foreground_prob``, ``batch_size``, ``num_workers``, ``cache_strategy``, ``cache_bytes``,
            ``shard_mode``, ``timeout``, ``multiprocessing_context``, ...).
        val_patch_size / val_batch_size: validation patches (``None``: whole volumes) and batch size.
        seed / transforms / val_transforms / incomplete / meta_tensors: as in the loaders.
        inference_patch_size / overlap: grid for ``predict_dataloader``.

    The training loader is stateful: Lightning's checkpoint stores its position (``state_dict``,
    counted from the batches the model has trained on, not those prefetched) and a resumed ``fit``
    trains exactly the samples of the epoch not yet trained on, also on another world size.
    """

    def __init__(
        self,
        store: RadiObject | StoreLocation | str,
        *,
        modalities: Sequence[str] | str | None = None,
        label: str | None = None,
        train_subjects: Sequence[str] | None = None,
        val_subjects: Sequence[str] | None = None,
        test_subjects: Sequence[str] | None = None,
        predict_subjects: Sequence[str] | None = None,
        split: bool = False,
        fold: int | None = None,
        patch: PatchConfig | None = None,
        cache: CacheConfig | None = None,
        loader: LoaderConfig | None = None,
        val_patch_size: Sequence[int] | None = None,
        val_batch_size: int = 1,
        seed: int = 0,
        transforms: Callable[[dict[str, Any]], Any] | None = None,
        val_transforms: Callable[[dict[str, Any]], Any] | None = None,
        incomplete: str = "error",
        meta_tensors: bool | None = None,
        inference_patch_size: Sequence[int] = (96, 96, 96),
        overlap: float = 0.25,
        **options: Any,
    ) -> None:
        super().__init__()
        if isinstance(store, RadiObject):
            self.location = store.location
        elif isinstance(store, StoreLocation):
            self.location = store
        else:
            self.location = StoreLocation(str(store))
        self.modalities = (
            [modalities] if isinstance(modalities, str) else (list(modalities) if modalities is not None else None)
        )
        self.label = label
        self.subjects = {
            "train": train_subjects,
            "val": val_subjects,
            "test": test_subjects,
            "predict": predict_subjects,
        }
        self.split, self.fold = bool(split or fold is not None), fold
        dist_opts = {k: options.pop(k) for k in ("shard_mode",) if k in options}
        self.patch, self.cache, self.loader, self.dist = resolve(
            {**options, **dist_opts}, patch=patch, cache=cache, loader=loader, caller="RadiObjectDataModule"
        )
        self.val_patch_size = tuple(val_patch_size) if val_patch_size is not None else None
        self.val_batch_size = int(val_batch_size)
        self.transforms, self.val_transforms = transforms, val_transforms
        self.incomplete, self.meta_tensors = incomplete, meta_tensors
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
        """Batches of the current epoch the model has trained on (Lightning's progress), if known.

        ``processed``: a batch counts once its training step ran; a checkpoint saved in
        ``on_train_batch_end`` (before Lightning marks the batch completed) includes it, and
        Lightning marks it completed again on restore.
        """
        trainer = getattr(self, "trainer", None)
        try:
            # the ignore below: no trainer: the AttributeError is caught below
            return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)  # type: ignore[union-attr]
        except AttributeError:
            return None

    def _current_epoch(self) -> int:
        trainer = self.trainer
        return int(trainer.current_epoch) if trainer is not None else 0

    def _stage_args(self, stage: str) -> dict[str, Any]:
        given = self.subjects[stage]
        if given is not None or not self.split or stage == "predict":
            return {"subjects": given}
        return {"split": stage, "fold": self.fold}

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> RadiDataLoader:
        rank, world = self._topology()
        loader = create_training_dataloader(
            self.radi,
            modalities=self.modalities,
            label=self.label,
            **self._stage_args("train"),
            patch=self.patch,
            cache=self.cache,
            loader=self.loader,
            distributed=DistributedConfig(rank=rank, world_size=world, shard_mode=self.dist.shard_mode),
            transforms=self.transforms,
            seed=self.seed,
            incomplete=self.incomplete,
            meta_tensors=self.meta_tensors,
        )
        loader.steps_fn = self._completed_steps
        sampler = loader.sampler
        assert isinstance(sampler, RadiSampler)
        sampler.len_counts_consumed = True  # Lightning counts batches across a mid-epoch restart
        sampler.epoch_source = self._current_epoch
        if self._pending_state is not None:
            loader.load_state_dict(self._pending_state)
            self._pending_state = None
        self._train = loader
        return loader

    def _eval_loader(self, stage: str) -> RadiDataLoader | list[Any]:
        if self.subjects[stage] is None and not (self.split and stage in ("val", "test")):
            return []
        if self.split and self.fold is not None and stage == "test" and self.subjects[stage] is None:
            return []
        rank, world = self._topology()
        try:
            return self._validation_loader(stage, rank, world)
        except EmptySelectionError:  # a split without rows for this stage: no loader, as Lightning takes it
            return []

    def _validation_loader(self, stage: str, rank: int, world: int) -> RadiDataLoader:
        return create_validation_dataloader(
            self.radi,
            modalities=self.modalities,
            label=self.label,
            **self._stage_args(stage),
            patch=PatchConfig(patch_size=self.val_patch_size),
            cache=self.cache,
            loader=replace(self.loader, batch_size=self.val_batch_size, drop_last=False),
            distributed=DistributedConfig(rank=rank, world_size=world),
            transforms=self.val_transforms,
            seed=self.seed,
            incomplete=self.incomplete,
            meta_tensors=self.meta_tensors,
        )

    def val_dataloader(self) -> RadiDataLoader | list[Any]:
        return self._eval_loader("val")

    def test_dataloader(self) -> RadiDataLoader | list[Any]:
        return self._eval_loader("test")

    def predict_dataloader(self) -> RadiDataLoader:
        rank, world = self._topology()
        return create_inference_dataloader(
            self.radi,
            modalities=self.modalities,
            subjects=self.subjects["predict"],
            patch=PatchConfig(patch_size=self.inference_patch_size, overlap=self.overlap),
            cache=self.cache,
            loader=replace(self.loader, batch_size=self.val_batch_size, drop_last=False),
            distributed=DistributedConfig(rank=rank, world_size=world),
            incomplete=self.incomplete,
        )

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
