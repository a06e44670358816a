#!/usr/bin/env bash
# Create (or reuse) a virtual environment, install loopprof with everything its tests need, run the test suite.
#   PYTHON=python3.12 VENV=.venv-312 bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e ./exporters/loopprof-exporter-otlp -e ".[dev,examples,otlp]"
exec "$VENV/bin/python" -m pytest "$@"
