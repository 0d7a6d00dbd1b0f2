#!/usr/bin/env bash
# Set up a virtual environment (.venv) with tlschat and its test tools, then run the whole suite:
# lint (ruff), types (mypy --strict), the TLS audit, and pytest (unit, integration over real TLS, TUI).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "== ruff"
.venv/bin/ruff check src tests benchmarks scripts
.venv/bin/ruff format --check src tests benchmarks scripts
echo "== mypy"
.venv/bin/mypy
echo "== TLS audit (sslyze --mozilla_config=modern in its own venv, openssl s_client matrix)"
bash scripts/tls_audit.sh
echo "== pytest"
# Two workers (pytest-xdist) on the two cores: most tests wait on sockets, timers and child
# processes, so the suite takes about two thirds of the time it takes in one process.
# TLSCHAT_TEST_WORKERS=0 runs it in one process.
.venv/bin/pytest -n "${TLSCHAT_TEST_WORKERS:-2}" "$@"
