"""Examples shown at the end of every command's ``--help`` (added by ``radiobject.cli.main``)."""

from __future__ import annotations

__all__ = ["EXAMPLES", "MAIN_EXAMPLES"]

MAIN_EXAMPLES = """examples:
  radiobject sample-cohort demo && radiobject ingest store --manifest demo/manifest.csv --subjects demo/participants.csv
  radiobject ingest-layout bids ds000001 -o store
  radiobject info store
  radiobject <command> --help      (every command lists its own examples)
"""

#: ``command -> examples`` text (``"bench storage"`` for a nested command; none without an entry).
EXAMPLES: dict[str, str] = {
    "ingest": """examples:
  radiobject ingest store --manifest manifest.csv --subjects participants.csv
  radiobject ingest store --images T1w='bids/sub-*/anat/sub-*_T1w.nii.gz' seg='bids/sub-*/anat/sub-*_seg.nii.gz' \\
      --subjects bids/participants.tsv          # IDs keep 'sub-': sub-01, ...
  radiobject ingest store --dicom-root dicom/ --workers 8 --json report.json
  radiobject ingest s3://bucket/store --manifest manifest.csv --s3-endpoint http://127.0.0.1:9000
""",
    "sample-cohort": """examples:
  radiobject sample-cohort demo --subjects 8
  radiobject sample-cohort demo --subjects 20 --shape 64,64,48 --seed 1
""",
    "info": """examples:
  radiobject info store
  radiobject info store --json | jq '.collections.seg.labels'
""",
    "verify": """examples:
  radiobject verify store
  radiobject verify store --quick
""",
    "export": """examples:
  radiobject export store out/
  radiobject export store out/ --collections T1w seg --subjects sub-01 sub-02
""",
    "qc": """examples:
  radiobject qc store -o qc.png
  radiobject qc store --label seg --collections T1w FLAIR --max-subjects 4
""",
    "convert-tiff": """examples:
  radiobject convert-tiff slide.svs -o slide.zarr
  radiobject convert-tiff tiles/ -o out/ --workers 4
  radiobject convert-tiff masks/ -o masks.zarr --labels
""",
    "bench": """examples:
  radiobject bench storage --out bench/ --quick
  radiobject bench storage t1.nii.gz --out bench/ --full
""",
    "bench storage": """examples:
  radiobject bench storage --out bench/                    # synthetic MRI- and CT-like volumes
  radiobject bench storage t1.nii.gz ct_series/ --out bench/ --patch 96
  radiobject bench storage --synthetic ct --scale 0.5 --out bench/ --no-lossy
""",
    "recommend": """examples:
  radiobject recommend t1.nii.gz --access patch:96
  radiobject recommend --access slice --storage s3        # on a synthetic MRI-like volume
""",
    "ingest-layout": """examples:
  radiobject ingest-layout bids ds000001 -o store                    # sessions: sub-01_ses-pre samples
  radiobject ingest-layout bids ds000001 -o store --suffixes T1w dwi --incomplete skip
  radiobject ingest-layout msd Task05_Prostate -o store
  radiobject ingest-layout nnunet nnUNet_raw/Dataset001_BrainTumour -o store --incomplete error
""",
    "export-nnunet": """examples:
  radiobject export-nnunet store nnUNet_raw/Dataset101_Mine --channels T1 FLAIR --label label
""",
    "stats": """examples:
  radiobject stats store
  radiobject stats store --mask seg --json > stats.json
  radiobject stats store --no-intensity
""",
    "split": """examples:
  radiobject split store -k 5 --stratify site          # columns fold (0..4) and split (fold 0 = val)
  radiobject split store --val-fraction 0.2 --seed 1
  radiobject split store -k 5 --group participant_id    # all sessions of a subject in one fold
""",
    "resample": """examples:
  radiobject resample store T1w --spacing 1,1,1            # -> collection T1w_1x1x1mm
  radiobject resample store seg --spacing 1.5 --out seg_iso   # labels: nearest neighbour
""",
    "labels": """examples:
  radiobject labels store seg
  radiobject labels store seg --set '1=tumour,2=edema' --count
  radiobject labels store seg --weights median
""",
}
