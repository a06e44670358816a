"""The final report in the terminal: the verdict first, then the four frontend signals, the engine, the processes.

Used by ``loopprof report`` and at the end of ``attach`` and ``run``. Everything is built as ``rich`` renderables
so tests can render at a fixed width and compare text.
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from loopprof.report import Frontend, Report

VERDICT_STYLE = {
    "frontend": "bold red",
    "engine": "bold magenta",
    "both": "bold red",
    "neither": "bold green",
    "inconclusive": "bold yellow",
}
HEADLINE = {
    "frontend": "The Python frontend is the bottleneck",
    "engine": "The engine is the bottleneck",
    "both": "Both the frontend and the engine are at capacity",
    "neither": "Neither side is at capacity (underloaded)",
    "inconclusive": "Inconclusive",
}
NOT_MEASURED = "—"


def fraction(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value * 100:.1f}%"


def millis(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value:.1f} ms"


def count(value: int | float | None) -> str:
    if value is None:
        return NOT_MEASURED
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def verdict_panel(report: Report) -> Panel:
    v = report.verdict
    body = Text()
    body.append(HEADLINE.get(v.bottleneck, v.bottleneck), style=VERDICT_STYLE.get(v.bottleneck, "bold"))
    body.append(f"   confidence {v.confidence:.0%}\n", style="dim")
    for reason in v.reasons:
        body.append(f"  • {reason}\n")
    if v.advice:
        body.append("What to do\n", style="bold")
        for item in v.advice:
            body.append(f"  → {item}\n", style="cyan")
    body.rstrip()
    return Panel(body, title="loopprof verdict", title_align="left", border_style="bold")


def _signal_columns(table: Table) -> None:
    table.add_column("signal", style="bold", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("evidence / method", style="dim", ratio=1, overflow="fold")


def _row(table: Table, signal: str, value: str, evidence: str = "") -> None:
    table.add_row(signal, value, evidence)


def frontend_table(frontend: Frontend, title: str = "Frontend (Python API server)") -> Table:
    t = Table(title=title, title_justify="left", show_edge=False)
    _signal_columns(t)
    loop, gil, gc, tok = frontend.loop, frontend.gil, frontend.gc, frontend.tokenization
    kind = f"{loop.loop_kind} loop, " if loop.loop_kind else ""
    _row(t, "loop busy", fraction(loop.busy_fraction), f"{kind}{loop.busy_method or 'not measured'}")
    lag = loop.lag_ms
    estimate = " (estimate)" if loop.lag_is_estimate else ""
    _row(
        t,
        "loop lag p50 / p99 / max",
        f"{millis(lag.p50)} / {millis(lag.p99)} / {millis(lag.max)}",
        loop.note if lag.max is None and loop.note else f"{loop.lag_method or 'not measured'}{estimate}",
    )
    for cb in sorted(loop.slow_callbacks, key=lambda c: c.max_ms, reverse=True)[:5]:
        _row(t, "  slow callback", millis(cb.max_ms), f"{cb.where} ×{cb.count}")
    _row(t, "GIL held", fraction(gil.held_fraction), gil.held_method or (gil.note or "not measured"))
    _row(t, "GIL contention", fraction(gil.contention), gil.contention_method or (gil.note or "not measured"))
    for holder in sorted(gil.holders, key=lambda h: h.fraction, reverse=True)[:3]:
        _row(t, "  holder", fraction(holder.fraction), holder.thread)
    _row(
        t,
        "GC pauses",
        fraction(gc.time_fraction),
        f"{count(gc.collections)} collections, total {millis(gc.pause_ms.total)}, "
        f"p99 {millis(gc.pause_ms.p99)}, max {millis(gc.pause_ms.max)}",
    )
    _row(
        t,
        "tokenization",
        fraction(tok.time_fraction),
        f"{count(tok.calls)} calls, {millis(tok.total_ms)}, on the loop {fraction(tok.on_loop_fraction)}"
        + (f" ({tok.method})" if tok.method else ""),
    )
    for op, stats in sorted(tok.by_operation.items()):
        _row(
            t,
            f"  {op}",
            millis(stats.get("total_ms")),
            f"{count(stats.get('calls'))} calls, on loop {millis(stats.get('on_loop_ms'))}",
        )
    req = frontend.requests
    if req.count is not None:
        _row(
            t,
            "requests",
            count(req.count),
            f"TTFB p50 {millis(req.ttfb_ms.p50)}, p99 {millis(req.ttfb_ms.p99)}, "
            f"max in flight {count(req.in_flight_max)}",
        )
    return t


def engine_table(report: Report) -> Table:
    e = report.engine
    t = Table(title="Engine", title_justify="left", show_edge=False)
    _signal_columns(t)
    _row(t, "engine busy", fraction(e.busy_fraction), e.method or "not measured")
    _row(t, "GPU utilization", fraction(e.gpu_utilization), "nvml" if "nvml" in e.signals else "no GPU read")
    _row(t, "requests waiting", count(e.waiting_requests), "engine /metrics" if "metrics" in e.signals else "")
    if e.running_requests is not None:
        _row(t, "requests running", count(e.running_requests), "engine /metrics")
    if e.kv_cache_usage is not None:
        _row(t, "KV cache usage", fraction(e.kv_cache_usage), "engine /metrics")
    _row(t, "signals read", ", ".join(e.signals) or "none", "")
    return t


def processes_table(report: Report) -> Table:
    t = Table(title="Processes", title_justify="left", show_edge=False)
    t.add_column("pid", justify="right", no_wrap=True, min_width=5)
    t.add_column("role", no_wrap=True, min_width=8)
    t.add_column("CPU", justify="right", no_wrap=True, min_width=6)
    t.add_column("command", overflow="ellipsis", no_wrap=True, ratio=1)
    for p in report.target.processes:
        t.add_row(str(p.pid), p.role, fraction(p.cpu_fraction), p.cmdline)
    return t


def header(report: Report) -> Text:
    text = Text()
    text.append("loopprof ", style="bold")
    text.append(f"{report.source} · {report.duration_s:.1f} s window from {report.started_at}")
    if report.target.pid is not None:
        text.append(f" · pid {report.target.pid}")
    if report.target.python:
        text.append(f" · Python {report.target.python}")
    if report.partial:
        text.append(" · PARTIAL (window cut short)", style="bold yellow")
    return text


def report_renderable(report: Report) -> RenderableType:
    parts: list[RenderableType] = [header(report), verdict_panel(report), frontend_table(report.frontend)]
    if len(report.frontends) > 1:
        for fe in report.frontends:
            parts.append(frontend_table(fe, title=f"Frontend process {fe.pid}"))
    parts.append(engine_table(report))
    if report.target.processes:
        parts.append(processes_table(report))
    health = report.sampler
    if health.errors or (health.late_fraction or 0) > 0:
        lines = [f"sampler: {health.samples} samples, late {fraction(health.late_fraction)}", *health.errors]
        parts.append(Text("\n".join(lines), style="yellow"))
    for note in report.notes:
        parts.append(Text(f"note: {note}", style="dim"))
    return Group(*parts)


def print_report(report: Report, console: Console | None = None) -> None:
    (console or Console()).print(report_renderable(report))
