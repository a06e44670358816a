"""The pure ground-truth arithmetic, and the frontend's own timers on a real event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from examples.stack.groundtruth import FrontendTruth, frontend_window, window


def _front(pid: int, t: float, run_s: float, rq_s: float | None, **kw: float) -> dict:
    base = {
        "pid": pid, "t": t, "loop_run_s": run_s, "loop_runqueue_s": rq_s, "gc_collections": 0, "gc_pause_s": 0.0,
        "gc_pause_max_s": 0.0, "tokenize_calls": 0, "tokenize_s": 0.0, "tokenize_on_loop_s": 0.0,
        "block_count": 0, "block_s": 0.0, "block_max_s": 0.0, "gil_hog_run_s": None,
        "lag_buckets_ms": [1.0, 10.0, 100.0, None], "lag_counts": [0, 0, 0, 0], "lag_max_ms": 0.0,
        "requests_finished": 0, "tokens_out": 0,
    }  # fmt: skip
    base.update(kw)
    return base


def _engine(t: float, busy_s: float, steps: int = 0, batch_sum: int = 0, waiting_sum: int = 0) -> dict:
    return {"t": t, "busy_s": busy_s, "step_s": busy_s, "steps": steps, "tokens": batch_sum,
            "requests_finished": 0, "batch_sum": batch_sum, "waiting_sum": waiting_sum}  # fmt: skip


def test_window_shares_are_deltas_over_wall_time() -> None:
    a = {"engine": _engine(10.0, 1.0, 10, 20, 0), "frontends": [_front(1, 10.0, 5.0, 1.0, gc_pause_s=0.1)]}
    b = {"engine": _engine(14.0, 4.0, 30, 80, 40), "frontends": [_front(1, 14.0, 8.0, 1.4, gc_pause_s=0.5)]}
    w = window(a, b)
    assert w["wall_s"] == pytest.approx(4.0)
    assert w["engine_busy"] == pytest.approx(0.75)
    assert w["engine_mean_batch"] == pytest.approx(3.0)
    assert w["engine_mean_waiting"] == pytest.approx(2.0)
    assert w["loop_busy"] == pytest.approx((3.0 + 0.4) / 4.0)
    assert w["loop_cpu"] == pytest.approx(0.75)
    assert w["gc_time_fraction"] == pytest.approx(0.1)


def test_window_takes_the_busiest_frontend_and_keeps_each() -> None:
    a = {"engine": _engine(0.0, 0.0), "frontends": [_front(1, 0.0, 0.0, 0.0), _front(2, 0.0, 0.0, 0.0)]}
    b = {
        "engine": _engine(2.0, 0.0),
        "frontends": [_front(1, 2.0, 0.4, 0.0), _front(2, 2.0, 1.9, 0.0, requests_finished=3)],
    }
    w = window(a, b)
    assert w["loop_busy"] == pytest.approx(0.95)
    assert w["frontend_count"] == 2
    assert w["frontends_serving"] == 1
    assert w["engine_mean_batch"] is None  # no steps: not measured, not 0


def test_unreadable_loop_thread_is_none_not_zero() -> None:
    w = frontend_window(_front(1, 0.0, 1.0, None), _front(1, 1.0, 2.0, None))
    assert w["loop_busy"] is None
    assert w["gil_hog_fraction"] is None


def test_lag_quantiles_come_from_bucket_differences() -> None:
    a = _front(1, 0.0, 0.0, 0.0, lag_counts=[10, 0, 0, 0])
    b = _front(1, 1.0, 0.0, 0.0, lag_counts=[10 + 98, 0, 2, 0])
    w = frontend_window(a, b)
    assert w["lag_p50_ms"] == 1.0
    assert w["lag_p99_ms"] == 100.0


def test_tokenize_timer_splits_loop_from_other_threads() -> None:
    truth = FrontendTruth()

    async def main() -> None:
        truth.attach_loop()
        try:
            truth.timed_tokenize(sum, range(1000))
            t = threading.Thread(target=truth.timed_tokenize, args=(sum, range(1000)))
            t.start()
            t.join()
        finally:
            truth.detach()

    asyncio.run(main())
    snap = truth.snapshot()
    assert snap["tokenize_calls"] == 2
    assert 0 < snap["tokenize_on_loop_s"] < snap["tokenize_s"]
    assert snap["loop_run_s"] is not None and snap["loop_run_s"] > 0
