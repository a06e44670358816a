"""From loop-thread samples to the report's loop section: a saturated loop gets no made-up lag."""

from __future__ import annotations

from loopprof.attach.loop_sampler import LoopSampler, LoopStats
from loopprof.attach.window import FrontendWindow


def _stats(busy: int, samples: int, stretches: list[float]) -> LoopStats:
    return LoopStats(pid=1, tid=1, samples=samples, busy=busy, stretches_ms=stretches, observed_s=samples * 0.002)


def test_saturated_loop_has_null_lag_with_a_reason() -> None:
    fe = FrontendWindow(pid=1, rate_hz=100, gil_rate_hz=25).frontend(_stats(4990, 5000, [9980.0]))
    assert fe.loop.busy_fraction == 0.998
    assert fe.loop.lag_ms.p50 is None and fe.loop.lag_ms.max is None
    assert fe.loop.note and "not estimated" in fe.loop.note


def test_loop_with_headroom_gets_an_estimate() -> None:
    fe = FrontendWindow(pid=1, rate_hz=100, gil_rate_hz=25).frontend(_stats(1000, 5000, [40.0] * 50))
    assert fe.loop.busy_fraction == 0.2
    assert fe.loop.lag_ms.max == 39.0  # a 2 ms probe lands on average 1 ms into a 40 ms stretch
    assert fe.loop.lag_is_estimate and fe.loop.note is None


def test_open_stretch_counts_up_to_its_last_busy_sample() -> None:
    sampler = LoopSampler(rate_hz=500)
    stats = sampler.stats[1] = LoopStats(pid=1, tid=1, period_s=0.002)
    for i in range(100):  # 0.2 s busy, never idle: the stretch is still open
        stats.add(True, i * 0.002)
    snap = sampler.snapshot(1)
    assert snap is not None and snap.stretches_ms == [200.0]
