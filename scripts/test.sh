#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs the test suite: the fast default run,
# then the tests marked slow. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/python -m pytest -m "not slow" -q -p no:cacheprovider "$@"
.venv/bin/python -m pytest -m slow -q -p no:cacheprovider "$@" || { rc=$?; [ $rc -eq 5 ] || exit $rc; }
