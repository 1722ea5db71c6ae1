"""DICOM ingest benchmark: radiobject's reader vs the dcm2niix binary vs a plain pydicom read.

Reads the same series three ways, repeats each (median of N, page cache warm) and prints times and
ratios to radiobject. "plain pydicom" = dcmread every file, sort by the slice normal, stack
``pixel_array`` with the rescale applied (no discovery, checks or header extraction): a floor for
any pydicom-based reader. dcm2niix runs as a subprocess writing an uncompressed .nii to a temp
folder (``-z n -b n``), so its time includes process start and the file write.

Usage: .venv/bin/python benchmarks/dicom_ingest.py [--repeat 5] [--data ../shared/data/dicom]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from radiobject.formats.dicom import read_dicom_series

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("RADIOBJECT_TEST_DATA", ROOT.parent / "shared" / "data")) / "dicom"
CASES = {
    "CT 512x512x28 (dcm_qa_ct S2010)": "dcm_qa_ct/In/Philips/S21570/S2010",
    "GE EPI 64x64x15x10, 150 files (dcm_qa_nih)": "dcm_qa_nih/In/20180918GE/mr_0004",
    "MR 256x256x4 JPEG 2000 (dicom2nifti)": "dicom2nifti/generic/compressed_j2k/001",
    "Siemens mosaic 4D 72x72x5x2 (dcm_qa_nih)": "dcm_qa_nih/In/20180918Si/mr_0003",
}


def plain_pydicom(folder: Path) -> np.ndarray:
    """The simplest correct-ish read: every file, sorted along the normal, rescaled."""
    dss = []
    for p in sorted(folder.iterdir()):
        try:
            dss.append(pydicom.dcmread(p))
        except pydicom.errors.InvalidDicomError:
            continue
    dss = [d for d in dss if "PixelData" in d]
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    n = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(n @ np.array(d.ImagePositionPatient, dtype=float)))
    return np.stack(
        [d.pixel_array * float(d.get("RescaleSlope", 1)) + float(d.get("RescaleIntercept", 0)) for d in dss],
        -1,
    )


def dcm2niix(folder: Path, exe: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [str(exe), "-z", "n", "-b", "n", "-o", tmp, "-f", "x", str(folder)],
            check=True,
            capture_output=True,
        )


def timeit(fn, repeat: int) -> float:
    fn()  # warm-up (page cache, imports)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()
    exe = Path(sys.executable).parent / "dcm2niix"
    print(
        f"python {sys.version.split()[0]}, pydicom {pydicom.__version__}, cpus {os.cpu_count()}, "
        f"median of {args.repeat} (warm cache)"
    )
    print(
        f"{'series':46s} {'radiobject':>11s} {'dcm2niix':>10s} {'pydicom':>9s}  "
        f"{'dcm2niix/us':>11s} {'pydicom/us':>10s}"
    )
    for name, rel in CASES.items():
        folder = args.data / rel
        if not folder.is_dir():
            print(f"{name:46s} (missing: {folder})")
            continue
        ours = timeit(lambda f=folder: read_dicom_series(f), args.repeat)
        d2n = timeit(lambda f=folder: dcm2niix(f, exe), args.repeat) if exe.exists() else float("nan")
        try:
            plain = timeit(lambda f=folder: plain_pydicom(f), args.repeat)
        except Exception:  # noqa: BLE001 - mosaics: the plain read cannot build a volume
            plain = float("nan")
        print(
            f"{name:46s} {ours * 1e3:9.1f}ms {d2n * 1e3:8.1f}ms {plain * 1e3:7.1f}ms  "
            f"{d2n / ours:11.2f} {plain / ours:10.2f}"
        )


if __name__ == "__main__":
    main()
