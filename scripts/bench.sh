#!/usr/bin/env bash
# Run every benchmark side by side (each interleaves with/without runs and reports medians and ratios) and
# refresh docs/benchmarks-*.md. About 15 minutes on 2 cores; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
"$PY" -m benchmarks.bench_agent_cost
"$PY" -m benchmarks.bench_middleware
"$PY" -m benchmarks.bench_run
"$PY" -m benchmarks.bench_attach
"$PY" -m benchmarks.bench_scenarios --loopprof
