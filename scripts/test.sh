#!/usr/bin/env bash
# Create (or reuse) a virtual environment, install loopprof with everything its tests need, run the test suite.
#   PYTHON=python3.12 VENV=.venv-312 bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="dev,examples,otlp"
source scripts/_venv.sh
exec "$VENV/bin/python" -m pytest "$@"
