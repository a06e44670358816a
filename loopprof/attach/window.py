"""Accumulate one frontend process's py-spy chunks and loop-thread samples into a :class:`report.Frontend`.

Every number records the method that produced it (``busy_method``, ``lag_method``, ``held_method``,
``Tokenization.method``) because attach mode sees the target from outside and a reader must be able to judge it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loopprof.attach import frames
from loopprof.attach.loop_sampler import LoopStats, lag_from_stretches
from loopprof.attach.pyspy import ThreadTimeline
from loopprof.report import Frontend, Gil, GilHolder, SlowCallback

SLOW_CALLBACK_MS = 20.0  # the embedded agent's default slow-callback threshold (AgentConfig.slow_callback_ms)
PROBE_MS = 2.0  # the embedded agent's timer-probe period (AgentConfig.lag_interval_ms)
# Share of 100 Hz looks in which a Python thread was on a CPU; native code that released the GIL counts too.
HELD_METHOD_PROC = "proc_running_python_threads"
# Above this busy share the loop almost never parks in its selector where a 500 Hz sampler can see it (uvloop
# polls with a zero timeout between callbacks), so busy stretches no longer say how late a callback runs.
LAG_ESTIMATE_MAX_BUSY = 0.97
LAG_SATURATED_NOTE = (
    "lag not estimated: the loop was busy {busy:.0%} of the window and almost never parked in its selector, so "
    "its busy stretches do not show how late callbacks run; `loopprof run` or the embedded agent measure lag exactly"
)
CONTENTION_NOTE = (
    "not measured from outside: a thread waiting for the GIL and one waiting on any other lock look the same "
    "(both sleep in a futex); use `loopprof run` or the embedded agent for GIL contention"
)


@dataclass
class FrontendWindow:
    """Running totals for one frontend process."""

    pid: int
    rate_hz: int
    gil_rate_hz: int
    loop_tid: int | None = None
    loop_kind: str | None = None
    timeline_ms: float = 0.0  # wall time covered by timeline chunks (the loop thread's span)
    loop_busy_ms: float = 0.0  # from py-spy stacks, the fallback when /proc cannot be read
    work_ms: dict[tuple[str, bool], float] = field(default_factory=dict)  # (category, on_loop) → ms
    slow: dict[str, list[float]] = field(default_factory=dict)  # where → [count, max_ms]
    gil_samples: dict[str, int] = field(default_factory=dict)  # thread name → samples holding the GIL
    gil_ticks: int = 0
    chunks: int = 0
    thread_names: dict[int, str] = field(default_factory=dict)  # os tid -> Python thread name, from py-spy
    gil_from_proc: bool = False  # the /proc sampler reads the Python threads: no py-spy --gil recording needed

    # -- feeding ------------------------------------------------------------------------------------------------

    def add_timeline(self, threads: dict[int, ThreadTimeline]) -> None:
        if not threads:
            return
        loop = self._find_loop(threads)
        span_ms = max(t.total_ms for t in threads.values())
        self.timeline_ms += span_ms
        self.thread_names.update({tl.os_tid: tl.name for tl in threads.values()})
        self.chunks += 1
        for tl in threads.values():
            on_loop = loop is not None and tl.os_tid == loop.os_tid
            for stack, dur in tl.segments:
                cat = frames.category(stack)
                if cat is not None:
                    key = (cat, on_loop)
                    self.work_ms[key] = self.work_ms.get(key, 0.0) + dur
        if loop is not None:
            self._add_loop(loop)

    def _find_loop(self, threads: dict[int, ThreadTimeline]) -> ThreadTimeline | None:
        if self.loop_tid is not None and self.loop_tid in threads:
            loop = threads[self.loop_tid]
            if self.loop_kind is None and any(frames.loop_depth(st) is not None for st, _ in loop.segments):
                self.loop_kind = _loop_kind(loop)
            return loop
        candidates = [
            t for t in threads.values() if any(frames.loop_depth(stack) is not None for stack, _ in t.segments)
        ]
        if not candidates:
            return None
        # Prefer the main thread (os_tid == pid): uvicorn and vLLM run their loop there.
        loop = next((t for t in candidates if t.os_tid == self.pid), candidates[0])
        self.loop_tid = loop.os_tid
        self.loop_kind = _loop_kind(loop)
        return loop

    def _add_loop(self, loop: ThreadTimeline) -> None:
        run_ms = 0.0
        run_where: dict[str, float] = {}
        for stack, dur in [*loop.segments, ((), 0.0)]:
            if stack and not frames.is_loop_idle(stack):
                run_ms += dur
                w = frames.where(stack)
                if w is not None:
                    run_where[w] = run_where.get(w, 0.0) + dur
                continue
            if run_ms > 0:
                self.loop_busy_ms += run_ms
                if run_ms >= SLOW_CALLBACK_MS:
                    where = max(run_where, key=lambda k: run_where[k])
                    entry = self.slow.setdefault(where, [0, 0.0])
                    entry[0] += 1
                    entry[1] = max(entry[1], run_ms)
            run_ms, run_where = 0.0, {}

    def add_gil(self, counts: dict[tuple[int, str], int], ticks: int) -> None:
        if ticks <= 0:
            return
        self.gil_ticks += ticks
        for (_, name), n in counts.items():
            self.gil_samples[name] = self.gil_samples.get(name, 0) + n

    # -- results ------------------------------------------------------------------------------------------------

    def frontend(self, loop_stats: LoopStats | None) -> Frontend:
        fe = Frontend(pid=self.pid)
        loop = fe.loop
        loop.loop_kind = self.loop_kind
        if loop_stats is not None and loop_stats.samples > 0:
            loop.busy_fraction = round(loop_stats.busy_fraction or 0.0, 4)
            loop.busy_method = "syscall_sampling"
            lag = lag_from_stretches(loop_stats.stretches_ms, loop_stats.observed_s * 1000.0, PROBE_MS)
            if loop.busy_fraction >= LAG_ESTIMATE_MAX_BUSY:
                lag = None
                loop.note = LAG_SATURATED_NOTE.format(busy=loop.busy_fraction)
            if lag is not None:
                loop.lag_ms.p50, loop.lag_ms.p90, loop.lag_ms.p99, loop.lag_ms.max = (
                    lag["p50"], lag["p90"], lag["p99"], lag["max"],
                )  # fmt: skip
                loop.lag_method = "busy_stretch_estimate"
                loop.lag_is_estimate = True
        elif self.loop_tid is not None and self.timeline_ms > 0:
            loop.busy_fraction = round(min(1.0, self.loop_busy_ms / self.timeline_ms), 4)
            loop.busy_method = "pyspy_samples"
        loop.slow_callbacks = sorted(
            (SlowCallback(where, int(c), round(m, 1)) for where, (c, m) in self.slow.items()),
            key=lambda s: s.max_ms,
            reverse=True,
        )[:10]
        fe.gil = self._gil(loop_stats)
        self._tokenization(fe)
        fe.gc.method = None  # GC needs py-spy --native, which pauses the target; see session notes
        return fe

    def _gil(self, loop_stats: LoopStats | None) -> Gil:
        gil = Gil(contention=None, note=CONTENTION_NOTE)
        if loop_stats is not None and loop_stats.gil_ticks > 0:
            n = loop_stats.gil_ticks
            gil.held_fraction = round(loop_stats.gil_held / n, 4)
            gil.held_method = HELD_METHOD_PROC
            gil.holders = sorted(
                (GilHolder(name, round(c / n, 4)) for name, c in loop_stats.holders.items()),
                key=lambda h: h.fraction,
                reverse=True,
            )[:8]
            return gil
        if self.gil_ticks <= 0:
            return gil
        held = sum(self.gil_samples.values())
        gil.held_fraction = round(min(1.0, held / self.gil_ticks), 4)
        gil.held_method = "pyspy --gil samples / ticks"
        gil.holders = sorted(
            (GilHolder(name, round(n / self.gil_ticks, 4)) for name, n in self.gil_samples.items()),
            key=lambda h: h.fraction,
            reverse=True,
        )[:8]
        return gil

    def _tokenization(self, fe: Frontend) -> None:
        tok = fe.tokenization
        if self.timeline_ms <= 0:
            return
        tok.method = "pyspy_frames"
        by_op: dict[str, dict[str, float]] = {}
        total = on_loop = 0.0
        for (cat, is_loop), ms in self.work_ms.items():
            if cat not in frames.TOKENIZATION_CATEGORIES:
                continue
            op = by_op.setdefault(cat, {"total_ms": 0.0, "on_loop_ms": 0.0})
            op["total_ms"] = round(op["total_ms"] + ms, 3)
            total += ms
            if is_loop:
                op["on_loop_ms"] = round(op["on_loop_ms"] + ms, 3)
                on_loop += ms
        tok.total_ms = round(total, 3)
        tok.time_fraction = round(total / self.timeline_ms, 4)
        tok.on_loop_fraction = round(on_loop / total, 4) if total > 0 else None
        tok.by_operation = by_op
        # calls stays None: sampling sees time, not call counts.


def _loop_kind(loop: ThreadTimeline) -> str:
    for stack, _ in loop.segments:
        if any("uvloop/" in f.filename for f in stack):
            return "uvloop"
        if any(f.filename.endswith("asyncio/base_events.py") for f in stack):
            return "asyncio"
    # asyncio.run with uvloop shows no base_events frame: the loop is Cython.
    return "uvloop"
