"""Slow callbacks: which code held the event loop when it stalled, seen from a watchdog thread.

Patching ``asyncio.Handle._run`` does not see uvloop's callbacks (Cython), so instead the agent thread calls
:meth:`SlowCallbackWatchdog.check` every ``watchdog_interval_ms``. When the loop heartbeat (the lag probe's
tick) has not advanced for ``slow_callback_ms``, it takes ``sys._current_frames()[loop_thread]`` and records the
innermost Python frame as ``module:function:line``. One stall is counted once, at the place first seen; its
length is the lateness of the tick that ended it (error < one lag period). ``sys._current_frames`` is called
only during a stall, so the cost on a healthy loop is a float comparison.
"""

from __future__ import annotations

import sys
from time import perf_counter
from types import FrameType
from typing import Any

from loopprof.probes.loop_lag import LagProbe

MAX_PLACES = 200  # bound the memory for pathological code that stalls in many places


def frame_where(frame: FrameType | None) -> str:
    if frame is None:
        return "<unknown>:<unknown>:0"
    module = frame.f_globals.get("__name__", "?")
    return f"{module}:{frame.f_code.co_name}:{frame.f_lineno}"


class SlowCallbackWatchdog:
    def __init__(
        self,
        lag: LagProbe,
        loop_thread_ident: int,
        slow_callback_ms: float = 20.0,
        places: dict[str, list[float]] | None = None,
    ) -> None:
        self.lag = lag
        self.thread_ident = loop_thread_ident
        self.threshold_s = slow_callback_ms / 1000.0
        # where -> [count, max_ms]; the agent passes one dict that outlives each attached loop
        self.places: dict[str, list[float]] = places if places is not None else {}
        self._stall_beat: float | None = None  # heartbeat value of the stall being tracked
        self._stall_where: str | None = None

    def check(self) -> None:
        """Called from the agent thread. Starts or finishes one stall episode."""
        beat = self.lag.heartbeat
        if self._stall_beat is not None and beat != self._stall_beat:
            self._finish()
        if self._stall_beat is None and perf_counter() - beat > self.threshold_s:
            frame = sys._current_frames().get(self.thread_ident)
            if self.lag.heartbeat != beat:  # the loop moved on while we looked: not a stall any more
                return
            self._stall_beat = beat
            self._stall_where = frame_where(frame)
            del frame

    def _finish(self) -> None:
        where = self._stall_where or "<unknown>:<unknown>:0"
        stall_ms = max(self.lag.last_lateness_s * 1000.0, self.threshold_s * 1000.0)
        entry = self.places.get(where)
        if entry is None:
            if len(self.places) >= MAX_PLACES:
                where = "<other>:<other>:0"
                entry = self.places.setdefault(where, [0, 0.0])
            else:
                entry = self.places[where] = [0, 0.0]
        entry[0] += 1
        entry[1] = max(entry[1], stall_ms)
        self._stall_beat = None
        self._stall_where = None

    def snapshot(self) -> dict[str, Any]:
        return {"threshold_ms": self.threshold_s * 1000.0, "places": {w: list(v) for w, v in self.places.items()}}


def slow_callbacks_window(first: dict[str, Any] | None, last: dict[str, Any] | None) -> list[tuple[str, int, float]]:
    """(where, count, max_ms) of the stalls between two snapshots, worst first.

    ``max_ms`` is cumulative per place (a max cannot be diffed); it belongs to this window when the count grew.
    """
    if not last:
        return []
    before = (first or {}).get("places") or {}
    out = []
    for where, (count, max_ms) in (last.get("places") or {}).items():
        n = int(count) - int(before.get(where, [0, 0.0])[0])
        if n > 0:
            out.append((where, n, float(max_ms)))
    out.sort(key=lambda t: (-t[2], -t[1]))
    return out
