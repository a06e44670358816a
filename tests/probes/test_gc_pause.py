"""GC pauses forced by the test and timed by the test itself must match what the gc.callbacks probe saw."""

from __future__ import annotations

import gc
import time

from loopprof.analysis.frontend import gc_window
from loopprof.probes.gc_pause import GcPauseProbe


def _cyclic_garbage(n: int) -> None:
    for _ in range(n):
        a: dict = {}
        b = [a]
        a["b"] = b
        a["pad"] = [object() for _ in range(4)]


def test_forced_collections_match_ground_truth() -> None:
    probe = GcPauseProbe()
    was_enabled = gc.isenabled()
    gc.disable()  # only the collections the test times may happen
    try:
        gc.collect()
        probe.start()
        first = probe.snapshot()
        measured = []
        for _ in range(5):
            _cyclic_garbage(200_000)
            t0 = time.perf_counter()
            gc.collect()
            measured.append((time.perf_counter() - t0) * 1000)
        last = probe.snapshot()
    finally:
        probe.stop()
        if was_enabled:
            gc.enable()
    snaps = {"t_mono_s": 0.0, "gc": first}, {"t_mono_s": 10.0, "gc": last}
    result = gc_window(*snaps, wall_s=10.0)
    assert result.collections == 5
    assert result.collections_by_generation == [0, 0, 5]
    total = sum(measured)
    assert total > 20, "the planted garbage should take measurable time to collect"
    assert abs(result.pause_ms.total - total) <= 0.10 * total, (result.pause_ms, measured)
    assert abs(result.pause_ms.max - max(measured)) <= 0.10 * max(measured)
    assert result.time_fraction is not None and abs(result.time_fraction - total / 10_000) < 0.01
    assert result.method == "gc_callbacks"


def test_stop_removes_callback_and_is_idempotent() -> None:
    probe = GcPauseProbe()
    probe.start()
    probe.start()
    assert gc.callbacks.count(probe._callback) == 1
    probe.stop()
    probe.stop()
    assert probe._callback not in gc.callbacks


def test_frequent_collections_are_counted_exactly_and_timed_part_of_the_time(monkeypatch) -> None:
    """An allocation-heavy app: counts stay exact, timing is duty-cycled, the time share is still estimated."""
    from loopprof.probes import gc_pause

    monkeypatch.setattr(gc_pause, "ON_S", 0.2)
    monkeypatch.setattr(gc_pause, "OFF_S", 0.3)
    probe = GcPauseProbe()
    probe.start()
    first = probe.snapshot()
    t_end = time.perf_counter() + 1.2
    while time.perf_counter() < t_end:  # ~1000 collections a second, far above HIGH_RATE_PER_S
        _cyclic_garbage(200)
        gc.collect(0)
        time.sleep(0.001)
        probe.tick()
    last = probe.snapshot()
    probe.stop()
    wall_s = 1.2
    result = gc_window({"gc": first}, {"gc": last}, wall_s=wall_s)
    timed = sum(last["timed_by_generation"]) - sum(first["timed_by_generation"])
    assert probe.off_windows >= 1
    assert result.collections is not None and result.collections > timed  # exact: the untimed ones too
    assert result.method == "gc_callbacks_sampled"
    assert 0.0 < last["timed_s"] - first["timed_s"] < wall_s
    assert result.time_fraction is not None and result.pause_ms.total is not None and result.pause_ms.max is not None
