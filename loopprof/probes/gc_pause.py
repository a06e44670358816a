"""GC pauses timed from ``gc.callbacks``, into preallocated storage with no locks; counts from ``gc.get_stats``.

The callback runs inside the collector, in whatever thread triggered it, while holding the GIL: it must not take
a lock another thread may hold (prometheus_client's metric objects deadlocked exactly this way) and should not
allocate metric objects. It only reads the clock and updates a preallocated list and a preallocated histogram.

Cost: CPython calls a registered callback twice per collection (3.3–3.6 µs on 3.11/3.12, ~12 µs on 3.13). An
allocation-heavy server collects generation 0 several times per request (a FastAPI JSON route: measured in
docs/benchmarks-agent-cost.md), and timing every one of those cost more than the 1% budget. So collections are
*counted* by the callback while it sees every collection, and from ``gc.get_stats()`` (free) when it does not;
pauses are *timed* all the time only when
collections are rare; above ``HIGH_RATE_PER_S`` the callback is installed for ``ON_S`` out of every
``ON_S + OFF_S`` seconds and the time share is estimated from those windows (method ``gc_callbacks_sampled``).
"""

from __future__ import annotations

import contextlib
import gc
from time import perf_counter, perf_counter_ns
from typing import Any

from loopprof._histogram import Histogram

HIGH_RATE_PER_S = 50.0  # collections per second above which pauses are timed part of the time
ON_S = 1.0
OFF_S = 9.0  # 10% duty cycle when sampling


def collections_by_generation() -> list[int]:
    """Collections per generation since the interpreter started; exact, and costs nothing to keep."""
    return [int(s.get("collections", 0)) for s in gc.get_stats()]


class GcPauseProbe:
    method = "gc_callbacks"

    def __init__(self) -> None:
        self.timed_by_generation = [0, 0, 0, 0]  # index 3 absorbs any generation number a future CPython adds
        self.total_ns = 0  # of the timed pauses
        self.hist = Histogram()
        self.off_windows = 0  # how many times timing was paused because collections were frequent
        self._t0 = 0
        self._started = False
        self._installed = False
        self._on_s = 0.0  # closed windows during which the callback was installed
        self._on_since = 0.0
        self._window_timed = 0
        self._off_until = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = perf_counter_ns()
            return
        t0 = self._t0
        if not t0:
            return
        pause = perf_counter_ns() - t0
        self._t0 = 0
        gen = info.get("generation", 0)
        self.timed_by_generation[gen if 0 <= gen < 3 else 3] += 1
        self.total_ns += pause
        self.hist.record_us(pause // 1000)

    def _install(self, now: float) -> None:
        gc.callbacks.append(self._callback)
        self._installed = True
        self._on_since = now
        self._window_timed = sum(self.timed_by_generation)

    def _uninstall(self, now: float) -> None:
        self._installed = False
        self._t0 = 0
        self._on_s += now - self._on_since
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._install(perf_counter())

    def stop(self) -> None:
        if self._started:
            self._started = False
            if self._installed:
                self._uninstall(perf_counter())

    def tick(self, now: float | None = None) -> None:
        """Called from the agent's thread: switch timing off while collections are frequent, on again later."""
        if not self._started:
            return
        now = perf_counter() if now is None else now
        if self._installed:
            elapsed = now - self._on_since
            if elapsed < ON_S:
                return
            rate = (sum(self.timed_by_generation) - self._window_timed) / elapsed
            self._uninstall(now)
            if rate > HIGH_RATE_PER_S:
                self.off_windows += 1
                self._off_until = now + OFF_S
            else:
                self._install(now)  # a fresh window, so the rate is always that of the last second
        elif now >= self._off_until:
            self._install(now)

    def snapshot(self) -> dict[str, Any]:
        now = perf_counter()
        return {
            "method": self.method,
            "by_generation": collections_by_generation(),
            "timed_by_generation": list(self.timed_by_generation),
            "total_ms": self.total_ns / 1e6,
            "timed_s": self._on_s + (now - self._on_since if self._installed else 0.0),
            "off_windows": self.off_windows,
            "hist": self.hist.snapshot(),
        }
