"""Busy share and busy stretches of each frontend's event-loop thread, read from ``/proc`` at a high rate.

py-spy at 100 Hz sees a stall to 10 ms; the loop's selector state read with ``pread`` of
``/proc/PID/task/TID/syscall`` costs ~3 µs, never stops the target, and tells *idle* (parked in
``epoll_wait``/``poll``/``select``) from *busy* (anything else, including a ``futex`` wait for the GIL: the loop
cannot run callbacks then either) for asyncio and uvloop alike. A run of consecutive busy samples is a *busy
stretch*: the time during which any callback that became due had to wait.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from loopprof.probes.thread_state import ThreadState, open_thread_state

DEFAULT_RATE_HZ = 500  # 2 ms resolution, the embedded agent's timer-probe period
GIL_EVERY = 5  # read every Python thread on one tick in five (100 Hz): enough for a share, cheap for many threads


@dataclass
class LoopStats:
    """Cumulative state samples and busy stretches of one loop thread."""

    pid: int
    tid: int
    samples: int = 0
    busy: int = 0
    stretches_ms: list[float] = field(default_factory=list)
    observed_s: float = 0.0
    gone: bool = False
    period_s: float = 0.002
    # GIL held share: on GIL ticks, was any Python thread of the process on a CPU (or runnable)?
    gil_ticks: int = 0
    gil_held: int = 0
    holders: dict[str, float] = field(default_factory=dict)  # thread name -> ticks it held the GIL
    _run_start: float | None = None
    _last_busy: float = 0.0
    _last_t: float | None = None

    @property
    def busy_fraction(self) -> float | None:
        return None if self.samples == 0 else self.busy / self.samples

    def add_gil(self, running: list[str]) -> None:
        """One look at every Python thread: a thread that runs Python holds the GIL, and only one can at a time."""
        self.gil_ticks += 1
        if running:
            self.gil_held += 1
            for name in running:
                self.holders[name] = self.holders.get(name, 0.0) + 1.0 / len(running)

    def add(self, busy: bool, now: float) -> None:
        if self._last_t is not None:
            self.observed_s += now - self._last_t
        self._last_t = now
        self.samples += 1
        if busy:
            self.busy += 1
            if self._run_start is None:
                self._run_start = now
            self._last_busy = now
        elif self._run_start is not None:
            # End the stretch one period after its last busy sample, not at this sample: when our own sampler
            # was delayed (a busy machine), the gap is not evidence that the loop stayed busy.
            end = min(now, self._last_busy + self.period_s)
            self.stretches_ms.append((end - self._run_start) * 1000.0)
            self._run_start = None


class LoopSampler:
    """One daemon thread sampling every registered loop thread at ``rate_hz``; counts late ticks."""

    def __init__(self, rate_hz: int = DEFAULT_RATE_HZ) -> None:
        self.period_s = 1.0 / rate_hz
        self.stats: dict[int, LoopStats] = {}
        self.ticks = 0
        self.late_ticks = 0
        self.errors: list[str] = []
        self._handles: dict[int, ThreadState] = {}
        self._threads: dict[int, dict[int, tuple[ThreadState, str]]] = {}  # pid -> tid -> (handle, name)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, pid: int, tid: int) -> bool:
        """Start sampling ``tid`` of ``pid``; ``False`` when /proc cannot be read (other OS, no permission)."""
        if pid in self.stats:
            return True
        try:
            handle = open_thread_state(pid, tid)
        except PermissionError:
            self.errors.append(f"no permission to read /proc/{pid}/task/{tid}/syscall (needs CAP_SYS_PTRACE)")
            return False
        if handle is None:
            return False
        with self._lock:
            self._handles[pid] = handle
            self.stats[pid] = LoopStats(pid, tid, period_s=self.period_s)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="loopprof-loop-sampler", daemon=True)
            self._thread.start()
        return True

    def set_threads(self, pid: int, names: dict[int, str]) -> None:
        """The process's Python threads (from py-spy) whose running state makes the GIL-held estimate."""
        with self._lock:
            if pid not in self.stats:
                return
            known = self._threads.setdefault(pid, {})
            for tid, name in names.items():
                if tid in known:
                    known[tid] = (known[tid][0], name)
                    continue
                try:
                    handle = open_thread_state(pid, tid)
                except PermissionError:
                    handle = None
                if handle is not None:
                    known[tid] = (handle, name)

    def gil_available(self, pid: int) -> bool:
        with self._lock:
            return bool(self._threads.get(pid))

    def _sample_gil(self, pid: int) -> None:
        threads = self._threads.get(pid)
        if not threads:
            return
        running = []
        for tid, (handle, name) in list(threads.items()):
            state, _ = handle.read()
            if state == "gone":
                handle.close()
                del threads[tid]
            elif state == "running":
                running.append(name)
        self.stats[pid].add_gil(running)

    def _run(self) -> None:
        next_t = time.perf_counter()
        while not self._stop.is_set():
            now = time.perf_counter()
            gil_tick = self.ticks % GIL_EVERY == 0
            with self._lock:
                for pid, handle in list(self._handles.items()):
                    state, _ = handle.read()
                    if state == "gone":
                        handle.close()
                        del self._handles[pid]
                        self.stats[pid].gone = True
                        continue
                    self.stats[pid].add(state != "polling", now)
                    if gil_tick:
                        self._sample_gil(pid)
            self.ticks += 1
            next_t += self.period_s
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -self.period_s:
                # More than one period behind: count it and re-anchor instead of bursting to catch up.
                self.late_ticks += 1
                next_t = time.perf_counter()

    def snapshot(self, pid: int) -> LoopStats | None:
        with self._lock:
            s = self.stats.get(pid)
            if s is None:
                return None
            stretches = list(s.stretches_ms)
            if s._run_start is not None:  # the stretch in progress counts up to its last busy sample
                stretches.append((s._last_busy + s.period_s - s._run_start) * 1000.0)
            return LoopStats(
                s.pid, s.tid, s.samples, s.busy, stretches, s.observed_s, s.gone, s.period_s,
                s.gil_ticks, s.gil_held, dict(s.holders),
            )  # fmt: skip

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        with self._lock:
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()
            for threads in self._threads.values():
                for handle, _ in threads.values():
                    handle.close()
            self._threads.clear()


def lag_from_stretches(stretches_ms: list[float], observed_ms: float, probe_ms: float) -> dict[str, float] | None:
    """Estimate the loop lag a ``probe_ms`` timer probe would have measured, from busy stretches.

    A timer that falls due inside a busy stretch of length L runs when the stretch ends; a probe re-armed every
    ``probe_ms`` lands in each stretch longer than ``probe_ms`` once, on average ``probe_ms / 2`` after it
    starts, so it is late by ``L - probe_ms / 2``. All other probes (one per ``probe_ms`` of idle time) are on
    time. This is what the embedded agent's probe reports, built from the outside; it over-states lag when a
    saturated loop runs many short callbacks back to back without ever reaching the selector.
    """
    if observed_ms <= 0:
        return None
    late = sorted(max(0.0, s - probe_ms / 2) for s in stretches_ms if s >= probe_ms)
    busy_ms = sum(stretches_ms)
    on_time = max(0, int((observed_ms - busy_ms) / probe_ms))
    n = on_time + len(late)
    if n == 0:
        return None

    def pct(q: float) -> float:
        rank = min(n - 1, int(q * n))
        return 0.0 if rank < on_time else late[rank - on_time]

    return {
        "p50": round(pct(0.50), 3),
        "p90": round(pct(0.90), 3),
        "p99": round(pct(0.99), 3),
        "max": round(late[-1] if late else 0.0, 3),
    }
