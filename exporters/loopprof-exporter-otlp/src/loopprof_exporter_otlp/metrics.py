"""Which OpenTelemetry metrics a loopprof report becomes: the catalogue and a pure report → points function.

Names and units follow the OpenTelemetry semantic conventions where one exists (``cpython.gc.collections``,
``process.cpu.utilization``); everything else is ``loopprof.*`` in seconds (``s``) or ``1`` for shares of wall
time, with ``{request}``/``{call}`` annotations for counts (UCUM treats those as ``1``). Every point carries
``process.pid`` and ``loopprof.role``. A value the report does not have (``None``) produces no point: a missing
series is honest, a made-up 0 is not.

The report holds percentiles of the window, not raw samples, so loop lag and GC pause are gauges with a
``loopprof.percentile`` attribute (the window's own p50/p90/p99/max, like a Prometheus summary) rather than an
OTLP histogram, which would need bucket counts the report does not carry. Sums over the window (GC pause time,
tokenization time, collections) are cumulative counters whose start time is the start of the exporter.

Kept free of OpenTelemetry imports so the mapping is testable on its own and docs/metrics.md can be checked
against :data:`METRICS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from loopprof.report import BOTTLENECKS, Frontend, GcPause, Percentiles, Report

Kind = Literal["gauge", "counter"]
AttrValue = str | int | bool
Attributes = Mapping[str, AttrValue]

PID = "process.pid"
ROLE = "loopprof.role"
PERCENTILE = "loopprof.percentile"
BOTTLENECK = "loopprof.bottleneck"
OPERATION = "loopprof.tokenization.operation"
ON_LOOP = "loopprof.tokenization.on_loop"
GENERATION = "cpython.gc.generation"
OTHER_OPERATION = "_OTHER"  # the semantic conventions' value for "not one of the known values"


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: what a dashboard needs to know about it."""

    name: str
    unit: str
    kind: Kind
    description: str
    attributes: tuple[str, ...] = ()  # besides process.pid and loopprof.role


@dataclass(frozen=True)
class Point:
    name: str
    value: float
    attributes: Attributes


LOOP_LAG = MetricSpec(
    "loopprof.loop.lag",
    "s",
    "gauge",
    "How late the event loop ran a callback that was due, as percentiles of the window.",
    (PERCENTILE,),
)
LOOP_UTILIZATION = MetricSpec(
    "loopprof.loop.utilization", "1", "gauge", "Share of wall time the event-loop thread ran callbacks."
)
GIL_UTILIZATION = MetricSpec("loopprof.gil.utilization", "1", "gauge", "Share of wall time any thread held the GIL.")
GIL_CONTENTION = MetricSpec(
    "loopprof.gil.contention", "1", "gauge", "Share of wall time a thread that wanted the GIL waited for it."
)
GC_COLLECTIONS = MetricSpec(
    "cpython.gc.collections",
    "{collection}",
    "counter",
    "Garbage collections during the profiling window (semantic convention; see docs/metrics.md on its start).",
    (GENERATION,),
)
GC_PAUSE_TIME = MetricSpec(
    "loopprof.gc.pause.time", "s", "counter", "Total time spent in garbage-collection pauses during the window."
)
GC_PAUSE_DURATION = MetricSpec(
    "loopprof.gc.pause.duration",
    "s",
    "gauge",
    "Length of one garbage-collection pause, as percentiles of the window.",
    (PERCENTILE,),
)
GC_UTILIZATION = MetricSpec(
    "loopprof.gc.utilization", "1", "gauge", "Share of wall time spent in garbage-collection pauses."
)
TOKENIZATION_TIME = MetricSpec(
    "loopprof.tokenization.time",
    "s",
    "counter",
    "Time spent tokenizing or detokenizing, by operation and by whether it ran on the event-loop thread.",
    (OPERATION, ON_LOOP),
)
TOKENIZATION_CALLS = MetricSpec(
    "loopprof.tokenization.calls", "{call}", "counter", "Tokenizer calls, by operation.", (OPERATION,)
)
TOKENIZATION_UTILIZATION = MetricSpec(
    "loopprof.tokenization.utilization", "1", "gauge", "Share of wall time spent tokenizing (any thread)."
)
ENGINE_UTILIZATION = MetricSpec(
    "loopprof.engine.utilization",
    "1",
    "gauge",
    "Share of wall time the engine was working rather than waiting for input from the frontend.",
)
ENGINE_GPU_UTILIZATION = MetricSpec(
    "loopprof.engine.gpu.utilization", "1", "gauge", "GPU utilization seen by the engine (NVML), averaged."
)
ENGINE_WAITING = MetricSpec(
    "loopprof.engine.requests.waiting", "{request}", "gauge", "Requests waiting in the engine's queue, averaged."
)
ENGINE_RUNNING = MetricSpec(
    "loopprof.engine.requests.running", "{request}", "gauge", "Requests the engine is running, averaged."
)
ENGINE_KV_CACHE = MetricSpec(
    "loopprof.engine.kv_cache.utilization", "1", "gauge", "Share of the engine's KV cache in use, averaged."
)
PROCESS_CPU = MetricSpec(
    "process.cpu.utilization",
    "1",
    "gauge",
    "CPU time of the process divided by wall time and by the number of CPUs available to it (semantic convention).",
)
VERDICT = MetricSpec(
    "loopprof.verdict",
    "1",
    "gauge",
    "1 for the current bottleneck class, 0 for the others.",
    (BOTTLENECK,),
)
VERDICT_CONFIDENCE = MetricSpec("loopprof.verdict.confidence", "1", "gauge", "Confidence of the current verdict.")

METRICS: tuple[MetricSpec, ...] = (
    LOOP_LAG,
    LOOP_UTILIZATION,
    GIL_UTILIZATION,
    GIL_CONTENTION,
    GC_COLLECTIONS,
    GC_PAUSE_TIME,
    GC_PAUSE_DURATION,
    GC_UTILIZATION,
    TOKENIZATION_TIME,
    TOKENIZATION_CALLS,
    TOKENIZATION_UTILIZATION,
    ENGINE_UTILIZATION,
    ENGINE_GPU_UTILIZATION,
    ENGINE_WAITING,
    ENGINE_RUNNING,
    ENGINE_KV_CACHE,
    PROCESS_CPU,
    VERDICT,
    VERDICT_CONFIDENCE,
)


def report_points(report: Report) -> list[Point]:
    """Every metric point the report supports, in catalogue order within each process."""
    points: list[Point] = []
    roles = {p.pid: p.role for p in report.target.processes}
    for fe in report.frontends or [report.frontend]:
        pid = fe.pid if fe.pid is not None else report.target.pid
        points += _frontend_points(fe, _base(pid, roles.get(pid, "frontend") if pid is not None else "frontend"))
    points += _engine_points(report, roles)
    points += _process_points(report)
    points += _verdict_points(report, roles)
    return points


def _base(pid: int | None, role: str) -> dict[str, AttrValue]:
    """process.pid is left out only when no producer knew it (never faked)."""
    return {ROLE: role} if pid is None else {PID: pid, ROLE: role}


def _point(points: list[Point], spec: MetricSpec, value: float | None, base: Attributes, **extra: AttrValue) -> None:
    if value is None:
        return
    points.append(Point(spec.name, float(value), {**base, **extra} if extra else dict(base)))


def _ms_to_s(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


def _percentile_points(
    points: list[Point], spec: MetricSpec, pct: Percentiles | GcPause, base: Attributes, keys: tuple[str, ...]
) -> None:
    for key in keys:
        _point(points, spec, _ms_to_s(getattr(pct, key)), base, **{PERCENTILE: key})


def _frontend_points(fe: Frontend, base: Attributes) -> list[Point]:
    points: list[Point] = []
    _percentile_points(points, LOOP_LAG, fe.loop.lag_ms, base, ("p50", "p90", "p99", "max"))
    _point(points, LOOP_UTILIZATION, fe.loop.busy_fraction, base)
    _point(points, GIL_UTILIZATION, fe.gil.held_fraction, base)
    _point(points, GIL_CONTENTION, fe.gil.contention, base)
    gc = fe.gc
    if gc.collections_by_generation:
        for generation, count in enumerate(gc.collections_by_generation):
            _point(points, GC_COLLECTIONS, count, base, **{GENERATION: generation})
    else:  # an out-of-process count cannot tell generations apart
        _point(points, GC_COLLECTIONS, gc.collections, base)
    _point(points, GC_PAUSE_TIME, _ms_to_s(gc.pause_ms.total), base)
    _percentile_points(points, GC_PAUSE_DURATION, gc.pause_ms, base, ("p99", "max"))
    _point(points, GC_UTILIZATION, gc.time_fraction, base)
    points += _tokenization_points(fe, base)
    return points


def _tokenization_points(fe: Frontend, base: Attributes) -> list[Point]:
    tok = fe.tokenization
    points: list[Point] = []
    operations: dict[str, tuple[float | None, float | None, float | None]] = {}
    for op, stats in tok.by_operation.items():
        operations[op] = (stats.get("calls"), stats.get("total_ms"), stats.get("on_loop_ms"))
    if not operations and (tok.calls is not None or tok.total_ms is not None):
        on_loop_ms = None
        if tok.total_ms is not None and tok.on_loop_fraction is not None:
            on_loop_ms = tok.total_ms * tok.on_loop_fraction
        operations[OTHER_OPERATION] = (tok.calls, tok.total_ms, on_loop_ms)
    for op, (calls, total_ms, on_loop_ms) in operations.items():
        if total_ms is not None and on_loop_ms is not None:
            on = min(max(on_loop_ms, 0.0), total_ms)
            _point(points, TOKENIZATION_TIME, on / 1000.0, base, **{OPERATION: op, ON_LOOP: True})
            _point(points, TOKENIZATION_TIME, (total_ms - on) / 1000.0, base, **{OPERATION: op, ON_LOOP: False})
        _point(points, TOKENIZATION_CALLS, calls, base, **{OPERATION: op})
    _point(points, TOKENIZATION_UTILIZATION, tok.time_fraction, base)
    return points


def _engine_points(report: Report, roles: Mapping[int, str]) -> list[Point]:
    engine = report.engine
    pids = list(engine.pids) or [pid for pid, role in roles.items() if role == "engine"]
    base = _base(min(pids) if pids else None, "engine")  # the engine's parent process stands for all of it
    points: list[Point] = []
    _point(points, ENGINE_UTILIZATION, engine.busy_fraction, base)
    _point(points, ENGINE_GPU_UTILIZATION, engine.gpu_utilization, base)
    _point(points, ENGINE_WAITING, engine.waiting_requests, base)
    _point(points, ENGINE_RUNNING, engine.running_requests, base)
    _point(points, ENGINE_KV_CACHE, engine.kv_cache_usage, base)
    return points


def _process_points(report: Report) -> list[Point]:
    points: list[Point] = []
    for proc in report.target.processes:
        if proc.cpu_fraction is not None:
            utilization = proc.cpu_fraction / available_cpus(proc.pid)
            _point(points, PROCESS_CPU, utilization, _base(proc.pid, proc.role))
    return points


def _verdict_points(report: Report, roles: Mapping[int, str]) -> list[Point]:
    pid = report.target.pid
    base = _base(pid, roles.get(pid, "frontend") if pid is not None else "frontend")
    points: list[Point] = []
    for bottleneck in BOTTLENECKS:
        _point(
            points, VERDICT, 1.0 if report.verdict.bottleneck == bottleneck else 0.0, base, **{BOTTLENECK: bottleneck}
        )
    _point(points, VERDICT_CONFIDENCE, report.verdict.confidence, base)
    return points


def available_cpus(pid: int) -> int:
    """CPUs the process may run on (its affinity), as process.cpu.utilization divides by; never 0."""
    try:
        return max(1, len(os.sched_getaffinity(pid)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


__all__ = ["METRICS", "MetricSpec", "Point", "report_points"]
