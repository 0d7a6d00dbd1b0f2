#!/usr/bin/env bash
# Set up a virtual environment (.venv) with tlschat, then start the daemon with its defaults
# (port 7700, data in the platform data directory, a self-signed certificate made on first start).
# Extra arguments go to `tlschat serve` (see `tlschat serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/tlschat serve "$@"
