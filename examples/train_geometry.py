"""Geometry-aware training input: MONAI spatial transforms in millimetres, and a TorchIO queue.

    python examples/train_geometry.py --store /tmp/sample_store [--steps 4]

Creates a small synthetic store at --store when none exists. MONAI: the loader's samples carry
``MetaTensor`` s with the volume's affine (on automatically for a MONAI ``Compose``), so
``Spacingd`` resamples to 1 mm and the batch's affine follows. TorchIO: ``subjects_dataset``
gives ``tio.Subject`` s with the real affine, sampled by a ``tio.Queue`` with a ``LabelSampler``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout as written

from radiobject import RadiObject
from radiobject.ml import create_training_dataloader, set_epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    if not Path(args.store, "radiobject.json").exists():
        from examples.make_sample_store import make_sample_store

        make_sample_store(args.store)
    radi = RadiObject(args.store)

    from monai import transforms as mt

    pipeline = mt.Compose(
        [
            mt.Spacingd(keys=["image", "label"], pixdim=(1.0, 1.0, 1.0), mode=("bilinear", "nearest")),
            mt.RandSpatialCropd(keys=["image", "label"], roi_size=(32, 32, 32)),
            mt.SpatialPadd(keys=["image", "label"], spatial_size=(32, 32, 32)),
        ]
    )
    loader = create_training_dataloader(
        radi, modalities=["T1w", "FLAIR"], label="seg", patch_size=(48, 48, 48), batch_size=2, transforms=pipeline
    )
    set_epoch(loader, 0)
    for step, batch in zip(range(args.steps), loader, strict=False):
        spacing = batch["spacing"][0].tolist()
        print(f"monai step {step}: image {tuple(batch['image'].shape)}, spacing {[round(s, 3) for s in spacing]} mm")

    import torchio as tio

    from radiobject.ml.adapters.torchio import subjects_dataset

    subjects = subjects_dataset(
        radi,
        modalities=["T1w", "FLAIR"],
        label="seg",
        transform=tio.Compose([tio.ToCanonical(), tio.RandomAffine(degrees=10)]),
    )
    queue = tio.Queue(
        subjects, max_length=8, samples_per_volume=2, sampler=tio.LabelSampler(patch_size=32), num_workers=0
    )
    for step, batch in zip(range(args.steps), torch.utils.data.DataLoader(queue, batch_size=2), strict=False):
        print(f"torchio step {step}: image {tuple(batch['image'][tio.DATA].shape)}, subjects {batch['subject_id']}")


if __name__ == "__main__":
    main()
