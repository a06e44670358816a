"""Several API-server processes summarised as one frontend: shares averaged, lag worst, counts added."""

from __future__ import annotations

from loopprof.analysis.fleet import combine_frontends
from loopprof.report import Frontend, Gc, GcPause, Gil, GilHolder, Loop, Percentiles, SlowCallback, Tokenization


def _fe(pid: int, busy: float | None, p99: float, gc_n: int | None, tok_ms: float, on_loop: float) -> Frontend:
    return Frontend(
        pid=pid,
        loop=Loop(busy, Percentiles(1.0, 2.0, p99, p99 + 1), [SlowCallback("app:f:1", 1, p99)], "selector_timing"),
        gil=Gil(0.5, None, [GilHolder("MainThread", 0.5)]),
        gc=Gc(gc_n, GcPause(10.0, 1.0, 2.0), 0.01),
        tokenization=Tokenization(10, tok_ms, 0.1, on_loop, {"encode": {"calls": 10, "total_ms": tok_ms}}),
    )


def test_one_process_is_returned_as_is() -> None:
    fe = _fe(1, 0.5, 5.0, 3, 100.0, 1.0)
    assert combine_frontends([fe]) is fe


def test_two_processes() -> None:
    out = combine_frontends([_fe(1, 0.9, 50.0, 3, 300.0, 1.0), _fe(2, 0.5, 5.0, None, 100.0, 0.0)])
    assert out.loop.busy_fraction == 0.7
    assert out.loop.lag_ms.p99 == 50.0 and out.loop.lag_ms.max == 51.0
    assert out.loop.slow_callbacks == [SlowCallback("app:f:1", 2, 50.0)]
    assert out.gc.collections == 3  # a process that did not measure adds nothing, and is not a 0
    assert out.tokenization.total_ms == 400.0
    assert out.tokenization.on_loop_fraction == 0.75  # weighted by time, not by process
    assert out.tokenization.by_operation["encode"] == {"calls": 20, "total_ms": 400.0}
    assert {h.thread for h in out.gil.holders} == {"MainThread (pid 1)", "MainThread (pid 2)"}
    assert out.gil.contention is None
