#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh), runs the static checks (ruff lint + format, mypy),
# builds the docs strictly, then runs the test suite: the fast default run, then the tests marked
# slow. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
echo "== ruff check"; .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== mkdocs build --strict"; .venv/bin/mkdocs build --strict -q -d "$(mktemp -d)"
echo "== pytest (fast)"
.venv/bin/python -m pytest -m "not slow" -q -p no:cacheprovider "$@"
echo "== pytest (slow)"
.venv/bin/python -m pytest -m slow -q -p no:cacheprovider "$@" || { rc=$?; [ $rc -eq 5 ] || exit $rc; }
