"""The frontend's own measurements — the ground truth loopprof is checked against.

Independent of loopprof's methods where it can be: loop busy comes from the kernel's per-thread scheduler
accounting (``/proc/self/task/TID/schedstat``: on-CPU plus run-queue time of the event-loop thread), GC time from
a ``gc.callbacks`` timer, tokenization from timing the stack's own tokenizer calls, loop lag from a 20 Hz timer.
All values are cumulative; :func:`window` turns two ``/debug/groundtruth`` answers into shares.
Known blind spot: time the loop thread sleeps waiting for the GIL is not on-CPU, so it is not counted as busy.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

LAG_PROBE_S = 0.05
LAG_BUCKETS_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, float("inf"))


def thread_sched_s(tid: int | None) -> tuple[float, float] | None:
    """(on-CPU seconds, run-queue wait seconds) of one thread of this process; None when unreadable."""
    if tid is None:
        return None
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            run_ns, wait_ns, _ = f.read().split()
    except (OSError, ValueError):
        return None
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


class FrontendTruth:
    """Counters one API-server process keeps about itself. Loop-side methods run on the loop thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.started_t = time.monotonic()
        self.loop_tid: int | None = None
        self.loop_ident: int | None = None
        self.gc_collections = 0
        self.gc_pause_s = 0.0
        self.gc_pause_max_s = 0.0
        self._gc_t0 = 0.0
        self.tokenize_calls = 0
        self.tokenize_s = 0.0
        self.tokenize_on_loop_s = 0.0
        self.block_count = 0
        self.block_s = 0.0
        self.block_max_s = 0.0
        self.hog_tids: list[int] = []
        self.lag_counts = [0] * len(LAG_BUCKETS_MS)
        self.lag_max_ms = 0.0
        self.requests_started = 0
        self.requests_finished = 0
        self.tokens_out = 0
        self._lock = threading.Lock()  # tokenization is timed on the executor thread too

    # --- installation -------------------------------------------------------------------------------------
    def attach_loop(self) -> None:
        """Call on the event-loop thread: remember it, start the lag timer, hook GC."""
        self.loop_tid = threading.get_native_id()
        self.loop_ident = threading.get_ident()
        gc.callbacks.append(self._on_gc)
        self._schedule_lag_probe(asyncio.get_running_loop())

    def detach(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
            return
        pause = time.perf_counter() - self._gc_t0
        self.gc_collections += 1
        self.gc_pause_s += pause
        self.gc_pause_max_s = max(self.gc_pause_max_s, pause)

    def _schedule_lag_probe(self, loop: asyncio.AbstractEventLoop) -> None:
        due = time.perf_counter() + LAG_PROBE_S

        def fire() -> None:
            lag_ms = max(0.0, (time.perf_counter() - due) * 1000.0)
            self.lag_counts[bisect.bisect_left(LAG_BUCKETS_MS, lag_ms)] += 1
            self.lag_max_ms = max(self.lag_max_ms, lag_ms)
            self._schedule_lag_probe(loop)

        loop.call_later(LAG_PROBE_S, fire)

    # --- timers used by the stack -------------------------------------------------------------------------
    def timed_tokenize(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one tokenizer call and book its time, on the loop or off it."""
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            dt = time.perf_counter() - t0
            with self._lock:
                self.tokenize_calls += 1
                self.tokenize_s += dt
                if threading.get_ident() == self.loop_ident:
                    self.tokenize_on_loop_s += dt

    @contextmanager
    def timed_block(self) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.block_count += 1
        self.block_s += dt
        self.block_max_s = max(self.block_max_s, dt)

    # --- reading ------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        loop_sched = thread_sched_s(self.loop_tid)
        hog = [thread_sched_s(t) for t in self.hog_tids]
        return {
            "pid": self.pid,
            "t": time.monotonic(),
            "started_t": self.started_t,
            "loop_tid": self.loop_tid,
            "loop_run_s": None if loop_sched is None else loop_sched[0],
            "loop_runqueue_s": None if loop_sched is None else loop_sched[1],
            "gc_collections": self.gc_collections,
            "gc_pause_s": self.gc_pause_s,
            "gc_pause_max_s": self.gc_pause_max_s,
            "tokenize_calls": self.tokenize_calls,
            "tokenize_s": self.tokenize_s,
            "tokenize_on_loop_s": self.tokenize_on_loop_s,
            "block_count": self.block_count,
            "block_s": self.block_s,
            "block_max_s": self.block_max_s,
            "gil_hog_run_s": sum(h[0] for h in hog if h) if self.hog_tids else None,
            "lag_buckets_ms": [*LAG_BUCKETS_MS[:-1], None],
            "lag_counts": list(self.lag_counts),
            "lag_max_ms": self.lag_max_ms,
            "requests_started": self.requests_started,
            "requests_finished": self.requests_finished,
            "tokens_out": self.tokens_out,
        }


# --- pure: two /debug/groundtruth answers → shares over the window between them ---------------------------


def _delta(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    if a.get(key) is None or b.get(key) is None:
        return None
    return b[key] - a[key]


def _share(num: float | None, den: float) -> float | None:
    return None if num is None or den <= 0 else num / den


def _lag_quantile(bounds: list[float | None], counts: list[int], q: float) -> float | None:
    """Upper bound of the bucket holding quantile q (None for the overflow bucket or no samples)."""
    total = sum(counts)
    if total == 0:
        return None
    seen = 0
    for bound, count in zip(bounds, counts, strict=True):
        seen += count
        if seen >= q * total:
            return bound
    return None


def frontend_window(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Shares for one API-server process between two of its snapshots."""
    wall = b["t"] - a["t"]
    run, rq = _delta(a, b, "loop_run_s"), _delta(a, b, "loop_runqueue_s")
    lag_counts = [y - x for x, y in zip(a["lag_counts"], b["lag_counts"], strict=True)]
    return {
        "pid": b["pid"],
        "wall_s": wall,
        "loop_busy": None if run is None or rq is None else min(1.0, (run + rq) / wall),
        "loop_cpu": _share(run, wall),
        "gc_collections": b["gc_collections"] - a["gc_collections"],
        "gc_time_fraction": _share(_delta(a, b, "gc_pause_s"), wall),
        "gc_pause_max_ms": b["gc_pause_max_s"] * 1000.0,  # since start: a max cannot be differenced
        "tokenize_calls": b["tokenize_calls"] - a["tokenize_calls"],
        "tokenize_fraction": _share(_delta(a, b, "tokenize_s"), wall),
        "tokenize_on_loop_fraction": _share(_delta(a, b, "tokenize_on_loop_s"), wall),
        "block_count": b["block_count"] - a["block_count"],
        "block_fraction": _share(_delta(a, b, "block_s"), wall),
        "block_max_ms": b["block_max_s"] * 1000.0,
        "gil_hog_fraction": _share(_delta(a, b, "gil_hog_run_s"), wall),
        "lag_p50_ms": _lag_quantile(b["lag_buckets_ms"], lag_counts, 0.50),
        "lag_p99_ms": _lag_quantile(b["lag_buckets_ms"], lag_counts, 0.99),
        "lag_max_ms": b["lag_max_ms"],
        "requests_finished": b["requests_finished"] - a["requests_finished"],
        "tokens_out": b["tokens_out"] - a["tokens_out"],
    }


def window(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Whole-stack ground truth between two ``/debug/groundtruth`` answers.

    Frontend shares are the busiest API server's (the one a profiler would call the bottleneck); each server's
    own numbers are under ``frontends``.
    """
    ea, eb = before["engine"], after["engine"]
    wall = eb["t"] - ea["t"]
    steps = eb["steps"] - ea["steps"]
    first = {f["pid"]: f for f in before["frontends"]}
    fronts = [frontend_window(first[f["pid"]], f) for f in after["frontends"] if f["pid"] in first]
    busiest = max(fronts, key=lambda f: f["loop_busy"] or 0.0) if fronts else {}
    out: dict[str, Any] = {k: v for k, v in busiest.items() if k not in ("pid", "wall_s")}
    out.update(
        {
            "wall_s": wall,
            "engine_busy": _share(eb["busy_s"] - ea["busy_s"], wall),
            "engine_step_fraction": _share(eb["step_s"] - ea["step_s"], wall),
            "engine_steps": steps,
            "engine_mean_batch": (eb["batch_sum"] - ea["batch_sum"]) / steps if steps else None,
            "engine_mean_waiting": (eb["waiting_sum"] - ea["waiting_sum"]) / steps if steps else None,
            "engine_tokens": eb["tokens"] - ea["tokens"],
            "requests_finished": eb["requests_finished"] - ea["requests_finished"],
            "frontend_count": len(fronts),
            "frontends_serving": sum(1 for f in fronts if f["requests_finished"] > 0),
            "frontends": fronts,
        }
    )
    if fronts:
        out["loop_busy_mean"] = sum(f["loop_busy"] or 0.0 for f in fronts) / len(fronts)
    return out
