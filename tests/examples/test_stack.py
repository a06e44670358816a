"""End to end: start the stack per scenario, drive bounded load, and check the planted ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
import pytest

from examples.harness import REPO_ROOT, StackError, StackHandle, running_stack
from examples.loadgen import LoadResult
from examples.profile import ProfileOutcome, profile_pid
from examples.scenarios import SCENARIOS

pytestmark = pytest.mark.slow


PROFILE_DELAY_S = 1.0  # the load reaches steady state before loopprof's window opens
PROFILE_S = 5.0
AGREE = 0.15  # loopprof (a 5 s window inside the load) vs the stack's own timers (the whole load)


def _drive_and_profile(stack: StackHandle) -> tuple[dict, LoadResult | None, ProfileOutcome]:
    """Run the scenario's load and, in its middle, ``loopprof attach`` on the API server."""
    outcome: list[ProfileOutcome] = []

    def profile() -> None:
        time.sleep(PROFILE_DELAY_S)
        outcome.append(profile_pid(stack.pid, PROFILE_S, stack.base_url + "/metrics"))

    profiler = threading.Thread(target=profile, daemon=True)
    profiler.start()
    truth, load = stack.drive(idle_s=PROFILE_DELAY_S + PROFILE_S + 2.0)
    profiler.join(timeout=120)
    assert outcome, "loopprof attach did not finish"
    return truth, load, outcome[0]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_ground_truth_and_loopprof_verdict(name: str) -> None:
    """Each scenario is what it claims by the stack's own timers, and loopprof says so too."""
    scenario = SCENARIOS[name]
    with running_stack(name) as stack:
        truth, load, outcome = _drive_and_profile(stack)
    if load is not None:
        assert load.completed > 0 and load.failed == 0, load.errors
    assert scenario.check(truth) == []
    report = outcome.report
    assert report is not None, outcome.output
    assert report["verdict"]["bottleneck"] == scenario.expected_bottleneck, (report["verdict"], truth)
    engine = report["engine"]
    assert engine["busy_fraction"] == pytest.approx(truth["engine_busy"], abs=AGREE), (engine, truth)
    if name != "gil_hog":  # the stack's loop timer leaves out GIL waits; loopprof counts them (the loop is stuck)
        busy = report["frontend"]["loop"]["busy_fraction"]
        expected = truth.get("loop_busy_mean", truth["loop_busy"])  # several API servers: loopprof's mean
        assert busy == pytest.approx(expected, abs=AGREE), (report["frontend"]["loop"], truth)
    roles = {p["role"] for p in report["target"]["processes"]}
    assert {"frontend", "engine"} <= roles


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _post(url: str, body: dict) -> bytes:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def test_openai_api_metrics_and_cleanup() -> None:
    with running_stack("idle") as stack:
        pids = [stack.pid, stack.engine_pid]
        assert psutil.Process(stack.engine_pid).ppid() == stack.pid  # EngineCore is the API server's child
        out = json.loads(_post(stack.base_url + "/v1/completions", {"prompt": "def f(x):", "max_tokens": 5}))
        assert out["usage"]["completion_tokens"] == 5 and out["choices"][0]["finish_reason"] == "length"
        chat = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "stream": True}
        events = _post(stack.base_url + "/v1/chat/completions", chat).split(b"\n\n")
        assert events[-2] == b"data: [DONE]" and len([e for e in events if e.startswith(b"data: {")]) == 4
        with urllib.request.urlopen(stack.base_url + "/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                     'vllm:time_to_first_token_seconds_count{model_name="loopprof-mini"} 2.0'):  # fmt: skip
            assert name in metrics
    assert not any(_alive(p) for p in pids)


def test_cleanup_when_the_body_raises_in_multi_frontend() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), running_stack("multi_frontend") as stack:
        pids = [stack.pid, stack.engine_pid, *stack.api_server_pids]
        assert len(stack.api_server_pids) == 2 and stack.pid not in stack.api_server_pids
        raise RuntimeError("boom")
    assert len(pids) == 4
    assert not any(_alive(p) for p in pids)


def test_bad_setting_is_one_line_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "examples.stack", "--loop", "tornado", "--port", "1"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "--loop must be uvloop or asyncio" in proc.stderr and "Traceback" not in proc.stderr


def test_stack_error_names_the_cause() -> None:
    with pytest.raises(StackError, match="before it was ready"), running_stack("idle", max_num_seqs=0):
        pass
