#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project with its test extras.
# torch==2.13.0 is installed first when torch is absent: that pin takes the CPU wheel; any other
# request for torch would pull several GB of CUDA packages on this kind of machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
# Known-good versions of every dependency (scripts/constraints.txt, from a green run): pip's
# resolver otherwise backtracks for many minutes over aiobotocore / botocore / boto3 releases.
# The package's own requirements stay ranges; refresh the file with `pip freeze` after an upgrade.
.venv/bin/python -m pip install -q -c scripts/constraints.txt -e ".[test]"
