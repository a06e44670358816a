"""End to end: start the stack per scenario, drive bounded load, and check the planted ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import psutil
import pytest

from examples.harness import REPO_ROOT, StackError, running_stack
from examples.scenarios import SCENARIOS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_ground_truth_holds(name: str) -> None:
    with running_stack(name) as stack:
        truth, load = stack.drive()
    if load is not None:
        assert load.completed > 0 and load.failed == 0, load.errors
    assert SCENARIOS[name].check(truth) == []


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
