"""GC pauses timed from ``gc.callbacks``, into preallocated storage with no locks.

The callback runs inside the collector, in whatever thread triggered it, while holding the GIL: it must not take
a lock another thread may hold (prometheus_client's metric objects deadlocked exactly this way) and should not
allocate metric objects. It only reads the clock and updates a preallocated list and a preallocated histogram.
Cost measured: 3.3–3.6 µs per collection on 3.11/3.12, ~12 µs on 3.13.
"""

from __future__ import annotations

import contextlib
import gc
from time import perf_counter_ns
from typing import Any

from loopprof._histogram import Histogram


class GcPauseProbe:
    method = "gc_callbacks"

    def __init__(self) -> None:
        self.by_generation = [0, 0, 0, 0]  # index 3 absorbs any generation number a future CPython adds
        self.total_ns = 0
        self.hist = Histogram()
        self._t0 = 0
        self._installed = False

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
        self.by_generation[gen if 0 <= gen < 3 else 3] += 1
        self.total_ns += pause
        self.hist.record_us(pause // 1000)

    def start(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True

    def stop(self) -> None:
        if self._installed:
            self._installed = False
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(self._callback)

    def snapshot(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "by_generation": list(self.by_generation),
            "total_ms": self.total_ns / 1e6,
            "hist": self.hist.snapshot(),
        }
