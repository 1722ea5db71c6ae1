"""Synthetic DICOM series written with pydicom, for checks against the dcm2niix wheel."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DCM2NIIX = Path(sys.executable).parent / "dcm2niix"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def phantom(rows: int, cols: int, n: int, seed: int = 0) -> np.ndarray:
    """(n, rows, cols) int16 test images: smooth blobs plus noise, background -1000."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:rows, 0:cols]
    out = np.full((n, rows, cols), -1000, dtype=np.int16)
    for k in range(n):
        cy, cx = rows * (0.4 + 0.02 * k), cols * 0.5
        blob = np.exp(-(((r - cy) / (rows / 4)) ** 2 + ((c - cx) / (cols / 5)) ** 2))
        img = -1000 + 1400 * blob + 30 * k + rng.normal(0, 20, (rows, cols))
        out[k] = np.clip(np.rint(img), -1024, 3000).astype(np.int16)
    return out


def base_dataset(sop_class: str, series_uid: str, study_uid: str, frame_uid: str) -> Dataset:
    """A data set with file meta, patient / study / series attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    sop_uid = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.PatientName, ds.PatientID = "Synthetic^Test", "SYN001"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.SeriesNumber, ds.AcquisitionNumber = 1, 1
    ds.PatientPosition = "HFS"
    return ds


def write_tilted_ct(
    folder: Path,
    *,
    tilt_deg: float,
    steps_mm: Sequence[float],
    rows: int = 48,
    cols: int = 40,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    manufacturer: str = "GE MEDICAL SYSTEMS",
    padding_value: int | None = None,
    seed: int = 0,
    shuffle: bool = True,
) -> np.ndarray:
    """Write an axial CT series acquired with gantry tilt (the table moves along z).

    The image plane is tilted about the patient x axis by ``tilt_deg``; slice k lies at
    ``z0 + sum(steps_mm[:k])`` on the table axis. Returns the stored (n, rows, cols) images.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = len(steps_mm) + 1
    t = math.radians(tilt_deg)
    iop = [1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t)]
    z = np.concatenate([[0.0], np.cumsum(steps_mm)])
    pix = phantom(rows, cols, n, seed)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    order = np.random.default_rng(seed + 1).permutation(n) if shuffle else np.arange(n)
    for k in order:
        ds = base_dataset(CT_IMAGE, series, study, frame)
        ds.Modality, ds.Manufacturer = "CT", manufacturer
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = int(k) + 1
        ds.ImagePositionPatient = [-14.0, -20.5, round(-100.0 + float(z[k]), 4)]
        ds.ImageOrientationPatient = [round(v, 8) for v in iop]
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = float(min(steps_mm)) if len(steps_mm) else 1.0
        ds.GantryDetectorTilt = tilt_deg
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if padding_value is not None:
            ds.PixelPaddingValue = padding_value
        stored = (pix[k].astype(np.int32) + 1024).astype(np.int16)
        if padding_value is not None:  # outside the reconstruction circle
            rr, cc = np.mgrid[0:rows, 0:cols]
            stored[((rr - rows / 2) / (rows / 2)) ** 2 + ((cc - cols / 2) / (cols / 2)) ** 2 > 1] = padding_value
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
    return pix


def run_dcm2niix(folder: Path, out: Path, *extra: str) -> dict[str, Any]:
    """Run the dcm2niix wheel; return ``{suffix: nibabel image}`` of the NIfTI files it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(DCM2NIIX), "-o", str(out), "-f", "s", "-z", "n", *extra, str(folder)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    res: dict[str, Any] = {}
    for f in sorted(out.glob("s*.nii")):
        res[f.name[1 : -len(".nii")]] = nib.load(str(f))
    return res


VENDORS = {
    "philips": "Philips Medical Systems",
    "canon": "CANON_MEC",
    "uih": "UIH",
    "siemens": "SIEMENS",
    "ge": "GE MEDICAL SYSTEMS",
}


def write_dwi_series(
    folder: Path,
    vendor: str,
    bvals: Sequence[float],
    vectors: Sequence[Sequence[float]],
    *,
    iop: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    n_slices: int = 3,
    rows: int = 12,
    cols: int = 10,
    phase: str = "COL",
) -> None:
    """A classic single-frame DWI series: one file per slice and volume.

    ``vectors`` are in patient (LPS) coordinates for the standard / Siemens tags and in GE's
    logical frame for ``vendor="ge"`` (written to its private tags).
    """
    folder.mkdir(parents=True, exist_ok=True)
    iop_a = np.asarray(iop, dtype=np.float64)
    normal = np.cross(iop_a[:3], iop_a[3:])
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(3)
    for t, (b, vec) in enumerate(zip(bvals, vectors, strict=True)):
        for k in range(n_slices):
            ds = base_dataset(MR_IMAGE, series, study, frame)
            ds.Modality, ds.Manufacturer = "MR", VENDORS[vendor]
            ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]
            ds.SeriesDescription = ds.ProtocolName = "ep2d_diff"
            ds.ScanningSequence, ds.SequenceVariant = "EP", "SK"
            ds.MRAcquisitionType = "2D"
            ds.InPlanePhaseEncodingDirection = phase
            ds.AcquisitionNumber, ds.TemporalPositionIdentifier = t + 1, t + 1
            ds.InstanceNumber = t * n_slices + k + 1
            ds.RepetitionTime, ds.EchoTime = 5000, 80
            pos = np.array([-60.0, -50.0, -20.0]) + normal * 4.0 * k
            ds.ImagePositionPatient = [round(float(x), 6) for x in pos]
            ds.ImageOrientationPatient = [round(float(x), 8) for x in iop_a]
            ds.PixelSpacing, ds.SliceThickness, ds.SpacingBetweenSlices = [2.0, 2.0], 4.0, 4.0
            ds.Rows, ds.Columns = rows, cols
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            if vendor == "ge":
                ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(
                    0x39, "IS", [int(1_000_000_000 + b), 8, 0, 0]
                )
                acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
                for off, v in zip((0xBB, 0xBC, 0xBD), vec, strict=True):
                    acq.add_new(off, "DS", f"{float(v):.6f}")
            elif vendor == "siemens":
                hdr = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
                hdr.add_new(0x0C, "IS", int(b))
                if b > 0:
                    hdr.add_new(0x0E, "FD", [float(v) for v in vec])
            else:
                ds.DiffusionBValue = float(b)
                if b > 0:
                    ds.DiffusionGradientOrientation = [float(v) for v in vec]
                    ds.DiffusionDirectionality = "DIRECTIONAL"
                else:
                    ds.DiffusionDirectionality = "NONE"
            img = rng.integers(0, 1000, (rows, cols)).astype(np.uint16)
            ds.PixelData = img.tobytes()
            ds.save_as(folder / f"IM{t:02d}_{k:02d}.dcm", enforce_file_format=True)


def write_philips_mr(
    folder: Path,
    *,
    rescale_slope: float,
    rescale_intercept: float,
    scale_slope: float | None,
    n_slices: int = 4,
    rows: int = 10,
    cols: int = 8,
) -> np.ndarray:
    """A Philips MR series with display (RescaleSlope / Intercept) and precise (2005,100E) scaling.

    Returns the stored values (n, rows, cols).
    """
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    stored = np.random.default_rng(5).integers(0, 4000, (n_slices, rows, cols)).astype(np.uint16)
    for k in range(n_slices):
        ds = base_dataset(MR_IMAGE, series, study, frame)
        ds.Modality, ds.Manufacturer = "MR", "Philips Medical Systems"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"]
        ds.SeriesDescription = ds.ProtocolName = "T1_FFE"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-40.0, -30.0, -10.0 + 3.0 * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness, ds.SpacingBetweenSlices = [1.5, 1.5], 3.0, 3.0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = rescale_slope, rescale_intercept, "normalized"
        if scale_slope is not None:
            ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(0x0E, "FL", scale_slope)
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
    return stored
