"""Slow callbacks: which code held the event loop when it stalled, seen from a watchdog thread.

Patching ``asyncio.Handle._run`` does not see uvloop's callbacks (Cython), so instead the agent thread calls
:meth:`SlowCallbackWatchdog.check` every ``watchdog_interval_ms``. When the loop heartbeat (the lag probe's
tick) has not advanced for ``slow_callback_ms``, it takes ``sys._current_frames()[loop_thread]`` and records the
innermost Python frame as ``module:function:line``. Because a thread running pure Python may let the watchdog
in only when it returns to the loop, the frame is also taken when the stall passes half the threshold, and a
frame showing the loop between callbacks is never blamed. One stall is counted once, at the place first seen;
its length is the lateness of the tick that ended it (error < one lag period), which the tick records.
``sys._current_frames`` is called only while the loop is late, so a healthy loop costs a float comparison.
"""

from __future__ import annotations

import sys
from time import perf_counter
from types import FrameType
from typing import Any

from loopprof.probes.loop_lag import LagProbe

MAX_PLACES = 200
IDLE_MODULES = frozenset(
    {"selectors", "asyncio.base_events", "asyncio.events", "asyncio.runners"}
)  # bound the memory for pathological code that stalls in many places


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
        lag.stall_threshold_s = self.threshold_s / 2  # the tick notes any stall that might be ours
        # where -> [count, max_ms]; the agent passes one dict that outlives each attached loop
        self.places: dict[str, list[float]] = places if places is not None else {}
        self._stall_beat: float | None = None  # heartbeat value of the stall being tracked
        self._stall_where: str | None = None
        self._candidate: tuple[float, str] | None = None  # (heartbeat, where) seen while the stall was young

    def _busy_where(self) -> str | None:
        """Where the loop thread is now, or None when it is between callbacks (the stall just ended)."""
        frame = sys._current_frames().get(self.thread_ident)
        try:
            if frame is None:
                return None
            if frame.f_code is self.lag.caller_code or frame.f_globals.get("__name__") in IDLE_MODULES:
                return None
            return frame_where(frame)
        finally:
            del frame

    def check(self) -> None:
        """Called from the agent thread. Starts or finishes one stall episode."""
        beat = self.lag.heartbeat
        if self._stall_beat is not None and beat != self._stall_beat:
            self._finish()
        if self._stall_beat is not None:
            return
        stale = perf_counter() - beat
        if stale <= self.threshold_s / 2:
            return
        # A thread holding the GIL in pure Python often lets us run only when it returns to the loop, so the
        # frame is also taken while the stall is young (over half the threshold) and kept as a candidate.
        where = self._busy_where()
        if self.lag.heartbeat != beat:  # the loop moved on while we looked
            return
        if where is not None:
            self._candidate = (beat, where)
        if stale > self.threshold_s:
            cand = self._candidate
            self._stall_beat = beat
            self._stall_where = where or (cand[1] if cand and cand[0] == beat else None)

    def _finish(self) -> None:
        where = self._stall_where or "<unknown>:<unknown>:0"
        # The tick that ended the stall knows its length (error < one lag period); without its record, the stall
        # lasted at least the threshold.
        late = max((late for beat, late in list(self.lag.recent_stalls) if beat == self._stall_beat), default=0.0)
        stall_ms = max(late, self.threshold_s) * 1000.0
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
        items = list(self.places.items())  # one C-level copy: safe while the agent thread inserts
        return {"threshold_ms": self.threshold_s * 1000.0, "places": {w: list(v) for w, v in items}}


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
