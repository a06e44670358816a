"""Pure: several API-server processes (vLLM's ``--api-server-count N``) → one ``frontend`` section.

Busy share and the other shares of wall time are the mean over processes: that is the fleet's utilisation, the
thing that adding processes relieves, and with the kernel spreading connections the processes load evenly.
Lag is the worst process's, percentile by percentile: a request routed to the busiest loop waits on it.
Counts and totals add up; slow callbacks and GIL holders are merged. Each process's own section stays in
``Report.frontends``, so nothing is hidden by the summary.
"""

from __future__ import annotations

from collections.abc import Iterable

from loopprof.report import Frontend, GilHolder, SlowCallback


def _present(values: Iterable[float | int | None]) -> list[float | int]:
    return [v for v in values if v is not None]


def _mean(values: Iterable[float | None]) -> float | None:
    got = _present(values)
    return round(sum(got) / len(got), 4) if got else None


def _sum(values: Iterable[float | int | None]) -> float | int | None:
    got = _present(values)
    return sum(got) if got else None


def _max(values: Iterable[float | None]) -> float | None:
    got = _present(values)
    return max(got) if got else None


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)


def combine_frontends(frontends: list[Frontend]) -> Frontend:
    if len(frontends) == 1:
        return frontends[0]
    out = Frontend()
    loops = [f.loop for f in frontends]
    out.loop.busy_fraction = _mean(lp.busy_fraction for lp in loops)
    for name in ("p50", "p90", "p99", "max"):
        setattr(out.loop.lag_ms, name, _max(getattr(lp.lag_ms, name) for lp in loops))
    slow: dict[str, SlowCallback] = {}
    for cb in (cb for lp in loops for cb in lp.slow_callbacks):
        merged = slow.setdefault(cb.where, SlowCallback(cb.where, 0, 0.0))
        merged.count += cb.count
        merged.max_ms = max(merged.max_ms, cb.max_ms)
    out.loop.slow_callbacks = sorted(slow.values(), key=lambda cb: cb.max_ms, reverse=True)[:10]
    out.loop.busy_method = _first(lp.busy_method for lp in loops)
    out.loop.lag_method = _first(lp.lag_method for lp in loops)
    out.loop.lag_is_estimate = any(lp.lag_is_estimate for lp in loops)
    kinds = {lp.loop_kind for lp in loops if lp.loop_kind}
    out.loop.loop_kind = kinds.pop() if len(kinds) == 1 else None

    gcs = [f.gc for f in frontends]
    out.gc.collections = _sum(g.collections for g in gcs)  # type: ignore[assignment]
    out.gc.pause_ms.total = _sum(g.pause_ms.total for g in gcs)  # type: ignore[assignment]
    out.gc.pause_ms.p99 = _max(g.pause_ms.p99 for g in gcs)
    out.gc.pause_ms.max = _max(g.pause_ms.max for g in gcs)
    out.gc.time_fraction = _mean(g.time_fraction for g in gcs)
    out.gc.method = _first(g.method for g in gcs)

    gils = [f.gil for f in frontends]
    out.gil.held_fraction = _mean(g.held_fraction for g in gils)
    out.gil.contention = _mean(g.contention for g in gils)
    out.gil.held_method = _first(g.held_method for g in gils)
    out.gil.contention_method = _first(g.contention_method for g in gils)
    out.gil.note = _first(g.note for g in gils)
    out.gil.holders = sorted(
        (
            GilHolder(f"{h.thread} (pid {f.pid})", round(h.fraction / len(frontends), 4))
            for f in frontends
            for h in f.gil.holders
        ),
        key=lambda h: h.fraction,
        reverse=True,
    )

    toks = [f.tokenization for f in frontends]
    tok = out.tokenization
    tok.calls = _sum(t.calls for t in toks)  # type: ignore[assignment]
    tok.total_ms = _sum(t.total_ms for t in toks)  # type: ignore[assignment]
    tok.time_fraction = _mean(t.time_fraction for t in toks)
    weighted = [
        (t.total_ms, t.on_loop_fraction) for t in toks if t.total_ms is not None and t.on_loop_fraction is not None
    ]
    total_weight = sum(w for w, _ in weighted)
    tok.on_loop_fraction = round(sum(w * f for w, f in weighted) / total_weight, 4) if total_weight else None
    tok.method = _first(t.method for t in toks)
    for t in toks:
        for op, stats in t.by_operation.items():
            merged_op = tok.by_operation.setdefault(op, {})
            for key, value in stats.items():
                merged_op[key] = round(merged_op.get(key, 0.0) + value, 3)

    out.requests.count = _sum(f.requests.count for f in frontends)  # type: ignore[assignment]
    out.requests.in_flight_max = _max(f.requests.in_flight_max for f in frontends)  # type: ignore[assignment]
    for name in ("p50", "p90", "p99", "max"):
        setattr(out.requests.ttfb_ms, name, _max(getattr(f.requests.ttfb_ms, name) for f in frontends))
    return out
