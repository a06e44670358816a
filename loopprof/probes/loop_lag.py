"""Event-loop lag: how late the loop runs a callback that was due, from a timer probe on the loop itself.

Every ``interval_ms`` (default 2 ms) the loop runs :meth:`LagProbe._tick`; the time between when the tick was
due and when it ran is the delay every ready callback saw at that moment. It is timed with
``time.perf_counter()`` because uvloop's ``loop.time()`` has 1 ms resolution. The tick is also the loop's
*heartbeat*, which the slow-callback watchdog reads from its own thread.

Blind spot: a block is seen only when a tick is due inside it, so a stall is measured with an error below one
period (a 50 ms block reads 48–50 ms at the default 2 ms), and stalls shorter than the period can be missed.
Cost: one timer callback per period on the loop (~2–6 µs each, about 0.1–0.3% of a core at 2 ms).
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from time import perf_counter
from typing import Any

from loopprof._histogram import Histogram


class LagProbe:
    """Timer probe on one loop. Create and :meth:`start` it from any thread; it schedules thread-safely."""

    method = "timer_probe"

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval_ms: float = 2.0, hist: Histogram | None = None
    ) -> None:
        self.loop = loop
        self.interval_s = max(0.0005, interval_ms / 1000.0)
        self.hist = hist if hist is not None else Histogram()  # the agent keeps one across loops
        self.heartbeat = perf_counter()  # last time the loop ran a tick (read by the watchdog)
        # (heartbeat before the stall, lateness) of the recent ticks later than stall_threshold_s: the watchdog
        # reads them to learn how long a stall it saw lasted, even if later ticks ran before it looked again.
        self.stall_threshold_s = float("inf")
        self.recent_stalls: deque[tuple[float, float]] = deque(maxlen=16)
        self._due = 0.0
        # The Python frame that runs loop callbacks (asyncio's Handle._run, or for uvloop the code that called
        # run_forever): when the loop thread's innermost frame is this one, the loop is between callbacks.
        self.caller_code: Any = None
        self._handle: asyncio.TimerHandle | None = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self.loop.call_soon_threadsafe(self._first)

    def _first(self) -> None:
        if not self._running:
            return
        now = perf_counter()
        self.heartbeat = now
        caller = sys._getframe(1)
        self.caller_code = None if caller is None else caller.f_code
        self._due = now + self.interval_s
        self._handle = self.loop.call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        now = perf_counter()
        late = now - self._due
        self.hist.record_us(int(late * 1e6))
        if late > self.stall_threshold_s:
            self.recent_stalls.append((self.heartbeat, late))
        self.heartbeat = now
        if self._running:
            self._due = now + self.interval_s
            self._handle = self.loop.call_later(self.interval_s, self._tick)

    def stop(self) -> None:
        """Stop ticking. Safe from any thread: a tick already scheduled sees the flag and does not re-arm."""
        self._running = False
        handle = self._handle
        if handle is not None:
            try:
                if self.loop.is_closed():
                    return
                self.loop.call_soon_threadsafe(handle.cancel)
            except RuntimeError:  # loop closed meanwhile
                pass

    def snapshot(self) -> dict[str, Any]:
        return {"method": self.method, "interval_ms": self.interval_s * 1000.0, "hist": self.hist.snapshot()}
