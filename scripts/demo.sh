#!/usr/bin/env bash
# Install loopprof and run the demo: the bundled vLLM-shaped example server under load, profiled live, verdict.
#   bash scripts/demo.sh [--scenario engine_bound] [--seconds 20]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="examples,otlp"
source scripts/_venv.sh
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m examples.demo "$@"
