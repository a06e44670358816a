#!/usr/bin/env bash
# Install loopprof and run the demo: the bundled vLLM-shaped example server under load, profiled live, verdict.
#   bash scripts/demo.sh [--scenario engine_bound] [--seconds 20]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e ./exporters/loopprof-exporter-otlp -e ".[examples,otlp]"
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m examples.demo "$@"
