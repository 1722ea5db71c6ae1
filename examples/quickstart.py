"""A tour of the store API on a tiny synthetic cohort (runs in a few seconds).

python examples/quickstart.py [--out DIR] [--backend zarr|tiledb]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pandas as pd

from radiobject import ImageData, RadiObject, Volume, WriteOptions


def synthetic_subject(seed: int, shape=(64, 64, 40)) -> tuple[ImageData, ImageData]:
    """A smooth 'brain' with a bright 'lesion' and its label, on a 1 x 1 x 2.5 mm LPS grid."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    brain = (x**2 + y**2 + (z * 1.2) ** 2) < 0.8
    centre = rng.uniform(-0.4, 0.4, 3)
    lesion = ((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) < 0.02
    t1 = (brain * 800 + lesion * 400 + rng.normal(0, 20, shape)).astype(np.int16)
    affine = np.array([[-1.0, 0, 0, 32], [0, -1.0, 0, 32], [0, 0, 2.5, -50], [0, 0, 0, 1]])
    return ImageData(t1, affine, source=f"synthetic-{seed}"), ImageData(lesion.astype(np.uint8), affine)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="folder for the store (default: a temporary one)")
    ap.add_argument("--backend", default="zarr", choices=["zarr", "tiledb"])
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="radiobject-quickstart-")

    subjects = [f"sub-{i:02d}" for i in (7, 3, 5, 1)]  # unsorted on purpose: identity is by ID
    pairs = {s: synthetic_subject(k) for k, s in enumerate(subjects)}
    obs_meta = pd.DataFrame({"obs_subject_id": subjects, "age": [61, 45, 70, 38], "site": ["A", "B", "A", "B"]})
    radi = RadiObject.from_images(
        f"{out}/cohort.radi",
        {"T1w": {s: p[0] for s, p in pairs.items()}, "seg": {s: p[1] for s, p in pairs.items()}},
        obs_meta=obs_meta,
        options=WriteOptions(backend=args.backend),
    )
    radi = RadiObject(f"{out}/cohort.radi")  # reopen: the backend is detected
    print(radi)
    print(radi.obs_meta)

    vol: Volume = radi.T1w.loc["sub-05"]
    print(vol, "spacing", vol.spacing, "dtype", vol.dtype)
    print("patch", vol[10:42, 10:42, 5:37].shape, "axial", vol.axial(20).shape, "sagittal", vol.sagittal(32).shape)

    train = radi.filter(site="A")  # a view: its collections hold only its subjects
    print("train subjects", train.obs_subject_ids, "-> T1w volumes", train.T1w.obs_ids)
    val = radi.loc[[s for s in radi.obs_subject_ids if s not in train.obs_subject_ids]]
    print("val subjects", val.obs_subject_ids, "-> seg volumes", val.seg.obs_ids)

    copy = val.to_radi_object(f"{out}/val.radi")  # materialise a view, geometry intact
    assert np.array_equal(copy.T1w.loc["sub-03"].affine, radi.T1w.loc["sub-03"].affine)
    radi.T1w.loc["sub-01"].to_nifti(f"{out}/sub-01_T1w.nii.gz")
    print("wrote", f"{out}/val.radi", "and", f"{out}/sub-01_T1w.nii.gz")


if __name__ == "__main__":
    main()
