"""Pure: two agent snapshots (``Agent.snapshot()``) → the ``frontend`` section of a report.

Both the embedded agent and the ``run`` wrapper (which receives snapshots over its socket) call this, so the two
modes share one analysis. Counters are cumulative, so a window is a difference; a section missing from either
snapshot is reported as not measured (``None``), never as 0.
"""

from __future__ import annotations

from typing import Any

from loopprof._histogram import window_percentiles_ms
from loopprof.probes.gil import HELD_NOTE, contention_window, held_window
from loopprof.probes.loop_busy import busy_fraction_window
from loopprof.probes.slow_callbacks import slow_callbacks_window
from loopprof.report import (
    Frontend,
    Gc,
    GcPause,
    Gil,
    GilHolder,
    Loop,
    Percentiles,
    Requests,
    SlowCallback,
    Tokenization,
)

MAX_SLOW_CALLBACKS = 20
MAX_HOLDERS = 10


def _section(snap: dict[str, Any], key: str) -> Any:
    value = snap.get(key)
    return value if isinstance(value, dict) else None


def _percentiles(first: dict[str, Any] | None, last: dict[str, Any] | None) -> Percentiles:
    (p50, p90, p99), mx, _ = window_percentiles_ms(first, last)
    return Percentiles(p50=p50, p90=p90, p99=p99, max=mx)


def _hist(section: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if section is None else section.get("hist")


def loop_window(first: dict[str, Any], last: dict[str, Any]) -> Loop:
    same_loop = first.get("attach_seq") is not None and first.get("attach_seq") == last.get("attach_seq")
    lag_l = _section(last, "lag")
    loop = Loop(loop_kind=last.get("loop_kind"))
    if lag_l is None:
        return loop
    # The lag histogram and slow-callback places are kept across loops, so they diff even after a re-attach.
    lag_f = _section(first, "lag")
    loop.lag_ms = _percentiles(_hist(lag_f), _hist(lag_l))
    loop.lag_method = lag_l.get("method")
    busy_l = _section(last, "busy")
    busy_f = _section(first, "busy") if same_loop else None
    loop.busy_fraction = busy_fraction_window(busy_f, busy_l)
    if loop.busy_fraction is not None and busy_l is not None:
        loop.busy_method = busy_l.get("method")
    slow = slow_callbacks_window(_section(first, "slow_callbacks"), _section(last, "slow_callbacks"))
    loop.slow_callbacks = [SlowCallback(w, n, round(m, 3)) for w, n, m in slow[:MAX_SLOW_CALLBACKS]]
    return loop


def gc_window(first: dict[str, Any], last: dict[str, Any], wall_s: float) -> Gc:
    """Counts are exact (``gc.get_stats``); pause time is exact while every collection was timed, and estimated
    from the timed windows when the probe sampled because collections were frequent."""
    gl, gf = _section(last, "gc"), _section(first, "gc")
    if gl is None:
        return Gc()
    gf = gf or {}
    timed_ms = float(gl["total_ms"]) - float(gf.get("total_ms", 0.0))
    timed_s = float(gl.get("timed_s", 0.0)) - float(gf.get("timed_s", 0.0))
    sampled = int(gl.get("off_windows", 0)) > int(gf.get("off_windows", 0))
    timed_n = sum(gl.get("timed_by_generation", [])) - sum(gf.get("timed_by_generation", []))
    # Counts: the callback's own while it saw the whole window (the same count any gc.callbacks user gets);
    # the interpreter's gc.get_stats() when timing was sampled and the callback missed collections on purpose.
    key = "by_generation" if sampled or "timed_by_generation" not in gl else "timed_by_generation"
    before = gf.get(key) or [0] * len(gl[key])
    by_gen = [int(a) - int(b) for a, b in zip(gl[key], before, strict=False)]
    (p99,), mx, _ = window_percentiles_ms(_hist(gf), _hist(gl), (0.99,))
    collections = sum(by_gen)
    if wall_s <= 0:
        fraction, total = None, None
    elif not sampled:
        fraction, total = min(1.0, timed_ms / 1000.0 / wall_s), round(timed_ms, 3)
    elif timed_s > 0:
        fraction = min(1.0, timed_ms / 1000.0 / timed_s)
        total = round(fraction * wall_s * 1000.0, 3)
    else:
        fraction, total = None, None
    return Gc(
        collections=collections,
        pause_ms=GcPause(total=total, p99=p99 if timed_n else None, max=mx if timed_n else None),
        time_fraction=fraction,
        collections_by_generation=by_gen[:3],
        method=f"{gl.get('method')}_sampled" if sampled else gl.get("method"),
    )


def gil_window(first: dict[str, Any], last: dict[str, Any], wall_s: float) -> Gil:
    gl, gf = _section(last, "gil"), _section(first, "gil")
    if gl is None:
        return Gil(note="GIL probe disabled")
    contention = contention_window((gf or {}).get("knock"), gl.get("knock"))
    held, holders = held_window((gf or {}).get("threads_cpu"), gl.get("threads_cpu"), wall_s)
    notes = []
    if held is not None:
        notes.append(HELD_NOTE)
    else:
        notes.append("held_fraction not measured: needs /proc/self/task/TID/schedstat (Linux)")
    if contention is None:
        notes.append("contention not measured: no GIL knock completed in the window")
    return Gil(
        held_fraction=None if held is None else round(held, 4),
        contention=None if contention is None else round(contention, 4),
        holders=[GilHolder(name, round(f, 4)) for name, f in holders[:MAX_HOLDERS]],
        held_method="python_threads_cpu" if held is not None else None,
        contention_method=gl.get("knock", {}).get("method") if contention is not None else None,
        note="; ".join(notes),
    )


def tokenization_window(first: dict[str, Any], last: dict[str, Any], wall_s: float) -> Tokenization:
    tl, tf = _section(last, "tokenization"), _section(first, "tokenization")
    if tl is None:
        return Tokenization()
    before = (tf or {}).get("by_operation") or {}
    by_op: dict[str, dict[str, float]] = {}
    for op, entry in (tl.get("by_operation") or {}).items():
        prev = before.get(op) or {}
        calls = int(entry["calls"]) - int(prev.get("calls", 0))
        if calls <= 0:
            continue
        by_op[op] = {
            "calls": calls,
            "total_ms": round(float(entry["total_ms"]) - float(prev.get("total_ms", 0.0)), 3),
            "on_loop_ms": round(float(entry["on_loop_ms"]) - float(prev.get("on_loop_ms", 0.0)), 3),
        }
    calls = sum(int(e["calls"]) for e in by_op.values())
    total_ms = sum(e["total_ms"] for e in by_op.values())
    on_loop_ms = sum(e["on_loop_ms"] for e in by_op.values())
    return Tokenization(
        calls=calls,
        total_ms=round(total_ms, 3),
        # Several threads tokenizing at once can add up to more than the wall time; a share stops at 1.
        time_fraction=None if wall_s <= 0 else round(min(1.0, total_ms / 1000.0 / wall_s), 4),
        on_loop_fraction=round(on_loop_ms / total_ms, 4) if total_ms > 0 else None,
        by_operation=by_op,
        method=tl.get("method"),
    )


def requests_window(first: dict[str, Any], last: dict[str, Any]) -> Requests:
    rl, rf = _section(last, "requests"), _section(first, "requests")
    if rl is None:
        return Requests()
    return Requests(
        count=int(rl.get("count", 0)) - int((rf or {}).get("count", 0)),
        in_flight_max=rl.get("in_flight_max"),
        ttfb_ms=_percentiles(_hist(rf), _hist(rl)),
    )


def frontend_window(first: dict[str, Any], last: dict[str, Any]) -> Frontend:
    """The frontend section for the window between two snapshots of the same process."""
    wall_s = float(last.get("t_mono_s", 0.0)) - float(first.get("t_mono_s", 0.0))
    return Frontend(
        loop=loop_window(first, last),
        gil=gil_window(first, last, wall_s),
        gc=gc_window(first, last, wall_s),
        tokenization=tokenization_window(first, last, wall_s),
        pid=last.get("pid"),
        requests=requests_window(first, last),
    )
