"""Share of wall time the event-loop thread runs callbacks instead of waiting for I/O.

Two methods, named in the report as ``Loop.busy_method``:

* ``selector_timing`` (asyncio): the loop's selector ``select`` is wrapped on that one loop instance, so every
  wait is timed exactly. Busy = 1 - time in ``select`` / wall time.
* ``syscall_sampling`` (uvloop and any other loop whose poll we cannot wrap): from the agent's own thread at
  ~200 Hz, read the loop thread's ``/proc/self/task/TID/schedstat`` (exact on-CPU + run-queue time) and its
  ``syscall`` (~3 µs each; the loop is never stopped). In each interval between samples, the loop's on-CPU
  time is busy; its run-queue time is busy unless the sample finds it parked in ``epoll_wait`` (then it was a
  wake-up, which asyncio's select timing also counts as idle); its off-CPU rest is busy only when the sample
  finds it blocked outside a poll (waiting for the GIL, a sleep, disk I/O). Counting samples alone is biased:
  the sampler needs the GIL, so while a callback holds it the samples come up to 5 ms (the switch interval)
  late, and a CPU-bound loop read about half its true busy share that way.
"""

from __future__ import annotations

import contextlib
import os
from time import perf_counter
from typing import Any

from loopprof.probes.thread_state import StateCounts, open_thread_state


class SelectorBusy:
    """Times the asyncio selector's waits. The state is one tuple swapped atomically, read from any thread."""

    method = "selector_timing"

    def __init__(self, selector: Any) -> None:
        self._selector = selector
        self._state = (0.0, 0.0)  # (idle seconds so far, perf_counter when the current wait began or 0)
        self._installed = False
        self._started_s = 0.0

    @classmethod
    def for_loop(cls, loop: Any) -> SelectorBusy | None:
        selector = getattr(loop, "_selector", None)
        if selector is None or not callable(getattr(selector, "select", None)):
            return None
        return cls(selector)

    def start(self) -> None:
        original = self._selector.select

        def select(timeout: float | None = None) -> Any:
            idle, _ = self._state
            t0 = perf_counter()
            self._state = (idle, t0)
            try:
                return original(timeout)
            finally:
                self._state = (idle + perf_counter() - t0, 0.0)

        select.__loopprof_wrapped__ = True  # type: ignore[attr-defined]
        self._started_s = perf_counter()
        self._selector.select = select  # instance attribute shadows the class method
        self._installed = True

    def stop(self) -> None:
        if self._installed:
            self._installed = False
            with contextlib.suppress(AttributeError):
                del self._selector.select

    def snapshot(self) -> dict[str, Any]:
        now = perf_counter()
        idle, since = self._state
        if since:
            idle += now - since
        return {"method": self.method, "idle_s": idle, "t_s": now, "started_s": self._started_s}


class SyscallBusy:
    """Counts samples of the loop thread's syscall state; :meth:`sample` is called from the agent thread."""

    method = "syscall_sampling"

    def __init__(self, native_tid: int, max_gap_s: float = 0.05) -> None:
        self.counts = StateCounts()
        self.busy_s = 0.0
        self.idle_s = 0.0
        self.max_gap_s = max_gap_s  # off-CPU time judged by one sample is capped at this (we were stalled)
        self._last: tuple[float, int, int] | None = None  # (perf_counter, on-CPU ns, run-queue ns) last time
        self._sched_fd: int | None = None
        self.error: str | None = None
        try:
            self._handle = open_thread_state(os.getpid(), native_tid)
        except PermissionError as exc:
            self._handle = None
            self.error = str(exc)
        if self._handle is None and self.error is None:
            self.error = "/proc thread state not available on this platform"
        if self._handle is not None:
            try:
                self._sched_fd = os.open(f"/proc/self/task/{native_tid}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._sched_fd = None

    def _sched_ns(self) -> tuple[int, int] | None:
        """(on-CPU, run-queue wait) nanoseconds of the loop thread so far."""
        if self._sched_fd is None:
            return None
        try:
            parts = os.pread(self._sched_fd, 64, 0).split()
            return int(parts[0]), int(parts[1])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def available(self) -> bool:
        return self._handle is not None

    def sample(self) -> None:
        handle = self._handle
        if handle is None:
            return
        state, nr = handle.read()
        sched = self._sched_ns()
        now = perf_counter()
        if state == "gone" or sched is None:
            return
        last, self._last = self._last, (now, sched[0], sched[1])
        self.counts.add(state, nr)  # only this thread writes; a reader is off by one sample at most
        if last is None:
            return
        gap = now - last[0]
        ran = min(gap, max(0.0, (sched[0] - last[1]) / 1e9))
        # Waiting for a CPU is busy inside a callback, idle right after epoll woke the loop (asyncio's select
        # timing counts it the same way): the sample's state decides. So does the off-CPU rest.
        queued = min(gap - ran, max(0.0, (sched[1] - last[2]) / 1e9))
        rest = min(gap - ran - queued, self.max_gap_s)
        self.busy_s += ran
        if state == "polling":
            self.idle_s += queued + rest
        elif state == "blocked":
            self.busy_s += queued + rest
        else:  # running: it was queued or on CPU for our callback; the off-CPU rest is not known to be busy
            self.busy_s += queued
            self.idle_s += rest

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._sched_fd is not None:
            os.close(self._sched_fd)
            self._sched_fd = None

    def snapshot(self) -> dict[str, Any]:
        c = self.counts
        busy, polling = c.running + c.blocked, c.polling
        return {
            "method": self.method,
            "busy_samples": busy,
            "idle_samples": polling,
            "busy_s": self.busy_s,
            "idle_s": self.idle_s,
            "error": self.error,
        }


def busy_fraction_window(first: dict[str, Any] | None, last: dict[str, Any] | None) -> float | None:
    """Busy share between two :meth:`snapshot` values of the same probe (``None`` when not measurable)."""
    if not last:
        return None
    first = first if first and first.get("method") == last.get("method") else None
    if last.get("method") == SelectorBusy.method:
        if first is None:  # the loop was attached inside the window: count from the attach
            if not last.get("started_s"):
                return None
            first = {"idle_s": 0.0, "t_s": last["started_s"]}
        wall = float(last["t_s"]) - float(first["t_s"])
        if wall <= 0:
            return None
        idle = float(last["idle_s"]) - float(first["idle_s"])
        return min(1.0, max(0.0, 1.0 - idle / wall))
    if last.get("method") == SyscallBusy.method:
        prev = first or {}
        busy = float(last.get("busy_s", 0.0)) - float(prev.get("busy_s", 0.0))
        idle = float(last.get("idle_s", 0.0)) - float(prev.get("idle_s", 0.0))
        n = int(last.get("busy_samples", 0)) + int(last.get("idle_samples", 0))
        n -= int(prev.get("busy_samples", 0)) + int(prev.get("idle_samples", 0))
        return None if n < 2 or busy + idle <= 0 else busy / (busy + idle)
    return None
