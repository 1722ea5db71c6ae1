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
.venv/bin/python -m pip install -q -e ".[test]"
