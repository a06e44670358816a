"""Pure: two :class:`~loopprof.probes.engine.EngineProbe` snapshots → the report's ``engine`` section."""

from __future__ import annotations

from typing import Any

from loopprof.probes.thread_state import StateCounts
from loopprof.report import Engine


def _counts(snapshot: dict[str, Any], pid: str) -> StateCounts:
    return StateCounts(**snapshot.get("threads", {}).get(pid, {}))


def waiting_share(counts: StateCounts) -> float | None:
    """Share of samples the engine's main thread waited for input: in a poll, or on its input queue's futex."""
    if counts.samples == 0:
        return None
    return (counts.polling + counts.futex) / counts.samples


def engine_window(first: dict[str, Any], last: dict[str, Any]) -> Engine:
    engine = Engine(pids=[int(p) for p in last.get("pids", [])])
    busy_by_pid: dict[int, float] = {}
    cpu_by_pid = engine_cpu_fractions(first, last)
    for pid in engine.pids:
        key = str(pid)
        a, b = _counts(first, key), _counts(last, key)
        window = StateCounts(b.running - a.running, b.polling - a.polling, b.blocked - a.blocked, b.futex - a.futex)
        waiting = waiting_share(window)
        if waiting is not None:
            busy_by_pid[pid] = 1.0 - waiting

    # The first engine process is the core that schedules steps (EngineCore); its workers may spin.
    if busy_by_pid:
        engine.busy_fraction = round(busy_by_pid[next(iter(busy_by_pid))], 4)
        engine.signals.append("samples")
        engine.method = "main-thread state samples (/proc syscall): poll/futex wait = waiting for input"
    elif cpu_by_pid:
        engine.busy_fraction = round(min(1.0, cpu_by_pid[next(iter(cpu_by_pid))]), 4)
        engine.method = "process CPU share (an upper bound when the engine spin-waits)"
    if cpu_by_pid:
        engine.signals.append("process_cpu")

    m0, m1 = first.get("metrics"), last.get("metrics")
    if m1 is not None:
        m0 = m0 or {}
        n_wait = m1["waiting_scrapes"] - m0.get("waiting_scrapes", 0)
        n_run = m1["running_scrapes"] - m0.get("running_scrapes", 0)
        n_kv = m1["kv_cache_scrapes"] - m0.get("kv_cache_scrapes", 0)
        if n_wait > 0:
            engine.waiting_requests = round((m1["waiting_sum"] - m0.get("waiting_sum", 0.0)) / n_wait, 3)
        if n_run > 0:
            engine.running_requests = round((m1["running_sum"] - m0.get("running_sum", 0.0)) / n_run, 3)
        if n_kv > 0:
            engine.kv_cache_usage = round((m1["kv_cache_sum"] - m0.get("kv_cache_sum", 0.0)) / n_kv, 4)
        if n_wait > 0 or n_run > 0:
            engine.signals.append("metrics")

    g0, g1 = first.get("gpu"), last.get("gpu")
    if g1 is not None:
        g0 = g0 or {"sum": 0.0, "samples": 0}
        n = g1["samples"] - g0["samples"]
        if n > 0:
            engine.gpu_utilization = round((g1["sum"] - g0["sum"]) / n, 4)
            engine.signals.append("nvml")
    return engine


def engine_cpu_fractions(first: dict[str, Any], last: dict[str, Any]) -> dict[int, float]:
    """Per engine process CPU share over the window, for ``target.processes[].cpu_fraction``."""
    wall_s = last["t_mono_s"] - first["t_mono_s"]
    out: dict[int, float] = {}
    for key, c1 in last.get("cpu_s", {}).items():
        c0 = first.get("cpu_s", {}).get(key)
        if c0 is not None and c1 is not None and wall_s > 0:
            out[int(key)] = round(max(0.0, (c1 - c0) / wall_s), 4)
    return out
