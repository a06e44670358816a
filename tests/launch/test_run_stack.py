"""``loopprof run`` around the vLLM-shaped example stack with two API servers sharing one engine, under load."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from examples.harness import free_port, wait_ready
from examples.loadgen import run_load
from examples.scenarios import SCENARIOS
from examples.stack.groundtruth import window
from tests.launch.conftest import ROOT, tree_pids

pytestmark = pytest.mark.slow


def test_two_api_servers_and_the_engine_with_the_right_verdict(tmp_path: Path) -> None:
    scenario = SCENARIOS["multi_frontend"]  # the engine is the limit; both loops have headroom
    port = free_port()
    out = tmp_path / "run.json"
    env = dict(os.environ, LOOPPROF_METRICS_URL=f"http://127.0.0.1:{port}/metrics")
    argv = [sys.executable, "-m", "loopprof", "run", "--no-live", "--json", str(out), "--",
            sys.executable, "-m", "examples.stack", "--scenario", scenario.name, "--port", str(port)]  # fmt: skip
    with (tmp_path / "output.log").open("w") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        seen: set[int] = set()
        try:
            before = wait_ready(proc, port, 2, 90.0)
            seen = tree_pids(proc.pid)
            assert scenario.load is not None
            load = run_load(dataclasses.replace(scenario.load, port=port, duration_s=12.0))
            truth = window(before, wait_ready(proc, port, 2, 30.0))
            proc.send_signal(signal.SIGINT)  # as Ctrl-C would: forwarded to the stack, report written
            proc.wait(timeout=60)
        finally:
            for pid in seen | tree_pids(proc.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert load.completed > 0 and load.failed == 0, load.errors
    report = json.loads(out.read_text())
    roles = {p["pid"]: p["role"] for p in report["target"]["processes"]}
    api_servers, engine = before["pids"]["api_servers"], before["pids"]["engine"]
    assert all(roles.get(pid) == "frontend" for pid in api_servers), roles
    assert roles.get(engine) == "engine", roles
    assert sorted(f["pid"] for f in report["frontends"]) == sorted(api_servers)
    # The stack's own gc.callbacks timer counted the collections of the load window; loopprof's window (the
    # whole run) contains it, so it cannot have seen fewer.
    own = {f["pid"]: f["gc_collections"] for f in truth["frontends"]}
    for fe in report["frontends"]:
        assert fe["gc"]["collections"] >= own[fe["pid"]] > 0, (fe["gc"], own)
    assert report["engine"]["waiting_requests"] is not None and report["engine"]["waiting_requests"] >= 1.0
    assert "metrics" in report["engine"]["signals"]
    assert report["verdict"]["bottleneck"] == scenario.expected_bottleneck == "engine", report["verdict"]
