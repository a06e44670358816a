"""GIL contention (gilknocker method) and an upper bound of the GIL held share.

``contention``: the agent thread sleeps ``gil_knock_interval_ms`` and measures how much later than asked it gets
to run Python again. That overshoot is timer slack + waiting for a CPU + waiting for the GIL. We subtract the
time the thread spent runnable on the run queue (``/proc/self/task/TID/schedstat``, so a busy machine is not
mistaken for GIL contention) and the smallest remaining overshoot seen, capped at 0.2 ms (timer slack and our
own constant overhead are ~0.05–0.1 ms; a larger minimum means every knock waited for the GIL, which must not be
subtracted away); what is left, over wall time, is the share of time a thread that wants the GIL waits for it.
With the default 5 ms switch interval a thread waits at most ~5 ms per knock, so a process whose Python threads
never let go reads about 0.5 at a 5 ms knock period.

``held_fraction``: sum of the on-CPU time of the process's *Python* threads over wall time (method
``python_threads_cpu``). Pure Python code holds the GIL while on CPU, so this is exact for it, but C code that
releases the GIL while computing (HF ``encode_batch``, tiktoken, numpy) is counted too: an upper bound, and the
report says so in ``Gil.note``. Linux only; elsewhere both are ``None``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

MAX_THREADS = 64
MAX_SLACK_S = 0.0002
HELD_NOTE = (
    "held_fraction is the on-CPU time of Python threads (python_threads_cpu): an upper bound, since C code "
    "that releases the GIL while running is counted as holding it"
)


def _schedstat(tid: int) -> tuple[int, int] | None:
    """(on-CPU ns, run-queue wait ns) of one thread of this process, or None."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
            parts = f.read().split()
        return int(parts[0]), int(parts[1])
    except (OSError, ValueError, IndexError):
        return None


class GilKnocker:
    """Accounts the knocks done by the agent thread; only that thread writes, any thread reads."""

    method = "knock_overshoot"

    def __init__(self) -> None:
        self.knocks = 0
        self.elapsed_s = 0.0
        self.wait_s = 0.0
        self.min_wait_s: float | None = None
        self._fd: int | None = None

    def _queued_ns(self) -> int | None:
        """Run-queue wait of the calling (agent) thread so far, from a kept-open fd (one ``pread``)."""
        if self._fd is None:
            try:
                self._fd = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
            except OSError:
                return None
        try:
            return int(os.pread(self._fd, 64, 0).split()[1])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def knock(self, wait: Callable[[float], Any], period_s: float) -> None:
        """Run ``wait(period_s)`` (a sleep) and account how late the thread got the GIL back."""
        before = self._queued_ns()
        t0 = perf_counter()
        wait(period_s)
        t1 = perf_counter()
        after = self._queued_ns()
        if before is None or after is None:
            return
        overshoot = (t1 - t0) - period_s - (after - before) / 1e9
        overshoot = max(0.0, overshoot)
        if self.min_wait_s is None or overshoot < self.min_wait_s:
            self.min_wait_s = overshoot
        self.wait_s += overshoot
        self.elapsed_s += t1 - t0
        self.knocks += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "knocks": self.knocks,
            "elapsed_s": self.elapsed_s,
            "wait_s": self.wait_s,
            "min_wait_s": self.min_wait_s,
        }


def threads_cpu_snapshot() -> dict[str, list[Any]]:
    """``{native_tid: [thread name, on-CPU seconds]}`` for the live Python threads (at most 64)."""
    out: dict[str, list[Any]] = {}
    if not os.path.isdir("/proc/self/task"):
        return out
    for t in threading.enumerate()[:MAX_THREADS]:
        tid = t.native_id
        if tid is None:
            continue
        st = _schedstat(tid)
        if st is not None:
            out[str(tid)] = [t.name, st[0] / 1e9]
    return out


def contention_window(first: dict[str, Any] | None, last: dict[str, Any] | None) -> float | None:
    if not last or not first:
        return None
    n = int(last.get("knocks", 0)) - int(first.get("knocks", 0))
    elapsed = float(last.get("elapsed_s", 0.0)) - float(first.get("elapsed_s", 0.0))
    if n <= 0 or elapsed <= 0:
        return None
    slack = min(float(last.get("min_wait_s") or 0.0), MAX_SLACK_S)
    wait = float(last.get("wait_s", 0.0)) - float(first.get("wait_s", 0.0)) - n * slack
    return min(1.0, max(0.0, wait / elapsed))


def held_window(
    first: dict[str, list[Any]] | None, last: dict[str, list[Any]] | None, wall_s: float
) -> tuple[float | None, list[tuple[str, float]]]:
    """Held share (upper bound) and per-thread shares, from two :func:`threads_cpu_snapshot` values."""
    if not last or wall_s <= 0 or first is None:
        return None, []
    holders = []
    total = 0.0
    for tid, (name, cpu_s) in last.items():
        prev = first.get(tid)
        # A thread born inside the window spent all of its CPU time in the window.
        d = float(cpu_s) - (float(prev[1]) if prev else 0.0)
        if d > 0:
            total += d
            holders.append((str(name), min(1.0, d / wall_s)))
    holders.sort(key=lambda h: -h[1])
    return min(1.0, total / wall_s), holders
