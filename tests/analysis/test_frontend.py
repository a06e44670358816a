"""frontend_window is pure: hand-built snapshots in, the report's frontend section out."""

from __future__ import annotations

from loopprof._histogram import Histogram
from loopprof.analysis.frontend import frontend_window


def _hist(values_ms: list[float]) -> dict:
    h = Histogram()
    for v in values_ms:
        h.record_us(int(v * 1000))
    return h.snapshot()


def _snap(t: float, **sections) -> dict:
    base = {"schema": "loopprof.snapshot/1", "pid": 42, "t_mono_s": t, "wall_time": 1e9 + t, "loop_kind": "asyncio"}
    return {**base, **sections}


def test_nothing_measured_is_null_not_zero() -> None:
    f = frontend_window(_snap(0.0), _snap(10.0))
    assert f.loop.busy_fraction is None and f.loop.lag_ms.p50 is None and f.loop.lag_ms.max is None
    assert f.gc.collections is None and f.gc.time_fraction is None
    assert f.gil.contention is None and f.gil.held_fraction is None and f.gil.note
    assert f.tokenization.calls is None and f.tokenization.time_fraction is None
    assert f.requests.count is None
    assert f.pid == 42


def test_a_window_is_the_difference_of_cumulative_counters() -> None:
    lag0 = {"method": "timer_probe", "hist": _hist([0.1] * 100 + [300.0])}
    lag1 = {"method": "timer_probe", "hist": _hist([0.1] * 100 + [300.0] + [0.2] * 98 + [40.0, 50.0])}
    slow0 = {"places": {"app:old:1": [3, 300.0]}}
    slow1 = {"places": {"app:old:1": [3, 300.0], "app:handler:7": [2, 50.0]}}
    busy0 = {"method": "selector_timing", "idle_s": 1.0, "t_s": 100.0, "started_s": 90.0, "attach_seq": 1}
    busy1 = {"method": "selector_timing", "idle_s": 8.0, "t_s": 110.0, "started_s": 90.0, "attach_seq": 1}
    gc0 = {"method": "gc_callbacks", "by_generation": [5, 1, 0], "timed_by_generation": [5, 1, 0, 0],
           "total_ms": 3.0, "hist": _hist([0.5] * 6)}  # fmt: skip
    gc1 = {"method": "gc_callbacks", "by_generation": [9, 1, 1], "timed_by_generation": [9, 1, 1, 0],
           "total_ms": 28.0, "hist": _hist([0.5] * 10 + [21])}  # fmt: skip
    tok0 = {"method": "instrumented", "by_operation": {"encode": {"calls": 1, "total_ms": 5.0, "on_loop_ms": 5.0}}}
    tok1 = {
        "method": "instrumented",
        "by_operation": {
            "encode": {"calls": 11, "total_ms": 1005.0, "on_loop_ms": 805.0},
            "decode": {"calls": 4, "total_ms": 1000.0, "on_loop_ms": 0.0},
        },
    }
    req0 = {"count": 10, "in_flight_max": 3, "hist": _hist([20.0] * 10)}
    req1 = {"count": 30, "in_flight_max": 7, "hist": _hist([20.0] * 10 + [100.0] * 20)}
    first = _snap(0.0, attach_seq=1, lag=lag0, slow_callbacks=slow0, busy=busy0, gc=gc0, tokenization=tok0)
    first["requests"] = req0
    last = _snap(10.0, attach_seq=1, lag=lag1, slow_callbacks=slow1, busy=busy1, gc=gc1, tokenization=tok1)
    last["requests"] = req1
    f = frontend_window(first, last)

    assert abs(f.loop.busy_fraction - 0.3) < 1e-9 and f.loop.busy_method == "selector_timing"
    assert abs(f.loop.lag_ms.max - 50.0) < 0.5  # the 300 ms stall was before the window
    assert f.loop.lag_ms.p50 is not None and f.loop.lag_ms.p50 < 0.3
    assert [(s.where, s.count) for s in f.loop.slow_callbacks] == [("app:handler:7", 2)]
    assert f.gc.collections == 5 and f.gc.collections_by_generation == [4, 0, 1]
    assert abs(f.gc.pause_ms.total - 25.0) < 1e-9 and abs(f.gc.time_fraction - 0.0025) < 1e-9
    assert abs(f.gc.pause_ms.max - 21.0) < 0.2
    t = f.tokenization
    assert t.calls == 14 and t.total_ms == 2000.0
    assert t.time_fraction == 0.2 and t.on_loop_fraction == 0.4
    assert t.by_operation["decode"] == {"calls": 4, "total_ms": 1000.0, "on_loop_ms": 0.0}
    assert f.requests.count == 20 and f.requests.in_flight_max == 7
    assert abs(f.requests.ttfb_ms.p50 - 100.0) < 1.0


def test_no_tokenization_is_zero_time_and_unknown_split() -> None:
    tok = {"method": "instrumented", "by_operation": {}}
    f = frontend_window(_snap(0.0, tokenization=tok), _snap(5.0, tokenization=tok))
    assert f.tokenization.calls == 0 and f.tokenization.time_fraction == 0.0
    assert f.tokenization.on_loop_fraction is None


def test_a_loop_attached_inside_the_window_counts_from_the_attach() -> None:
    busy = {"method": "selector_timing", "idle_s": 3.0, "t_s": 110.0, "started_s": 106.0, "attach_seq": 2}
    lag = {"method": "timer_probe", "hist": _hist([0.1])}
    f = frontend_window(_snap(0.0, attach_seq=1), _snap(10.0, attach_seq=2, busy=busy, lag=lag))
    assert f.loop.busy_fraction == 0.25


def test_parallel_tokenization_share_stops_at_one() -> None:
    tok = {"method": "instrumented", "by_operation": {"encode": {"calls": 8, "total_ms": 30_000.0, "on_loop_ms": 0}}}
    f = frontend_window(_snap(0.0), _snap(10.0, tokenization=tok))
    assert f.tokenization.time_fraction == 1.0
