"""Throughput cost of ``loopprof run``: the same uvicorn server with and without the wrapper, interleaved.

    .venv/bin/python benchmarks/bench_run.py [--rounds 5] [--seconds 5]

Each round starts ``tests/launch/server_app.py`` (2 uvicorn workers + an idle engine child) once plainly and
once under ``python -m loopprof run``, loads it with a fixed number of client threads for a fixed time, and
counts completed requests. Prints per-round requests/s, the medians and their ratio (the budget is ≤ 1% loss).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.launch.conftest import free_port, wait_port  # noqa: E402
from tests.launch.test_run_e2e import _load  # noqa: E402

APP = ROOT / "tests" / "launch" / "server_app.py"


def one(wrapped: bool, seconds: float, clients: int) -> float:
    port = free_port()
    cmd = [sys.executable, str(APP), str(port)]
    if wrapped:
        cmd = [sys.executable, "-m", "loopprof", "run", "--", *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port, proc)
        time.sleep(1.0)
        _load(port, 1.0, clients)  # warm-up
        return _load(port, seconds, clients) / seconds
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    plain: list[float] = []
    wrapped: list[float] = []
    for r in range(args.rounds):
        for is_wrapped in (False, True) if r % 2 == 0 else (True, False):
            rps = one(is_wrapped, args.seconds, args.clients)
            (wrapped if is_wrapped else plain).append(rps)
            print(f"round {r + 1} {'loopprof run' if is_wrapped else 'plain       '}: {rps:7.1f} req/s", flush=True)
    p, w = statistics.median(plain), statistics.median(wrapped)
    print(f"median plain {p:.1f} req/s, under loopprof run {w:.1f} req/s, ratio {w / p:.3f} ({(1 - w / p):+.1%} loss)")


if __name__ == "__main__":
    main()
