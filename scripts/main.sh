#!/usr/bin/env bash
# The main job, end to end on a fresh machine:
#   set up .venv (torch==2.13.0 first), write a small synthetic NIfTI cohort, ingest it into a
#   local store with `radiobject ingest`, print the store summary (`radiobject info`), verify it,
#   and run a few training steps of a tiny 3D model through the ml loaders (patches/s printed).
# Usage: bash scripts/main.sh [WORKDIR]   (default: ./out)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-out}
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
RO=.venv/bin/radiobject
rm -rf "$WORK/cohort" "$WORK/store.radi"
$RO sample-cohort "$WORK/cohort" --subjects 8
$RO ingest "$WORK/store.radi" \
  --images "T1w=$WORK/cohort/*/anat/*_T1w.nii.gz" "FLAIR=$WORK/cohort/*/anat/*_FLAIR.nii.gz" \
           "seg=$WORK/cohort/*/anat/*_seg.nii.gz" \
  --subjects "$WORK/cohort/participants.csv" --validate-alignment --workers 2
$RO info "$WORK/store.radi"
$RO verify "$WORK/store.radi"
.venv/bin/python examples/quickstart_train.py --store "$WORK/store.radi" --steps 12
