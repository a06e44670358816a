"""The live view while a window is being sampled: a ``rich`` dashboard on a terminal, plain lines otherwise.

It only reads :class:`Report` values the session produces every second; it keeps a short history of each signal
for sparklines. Rendering is pure (``dashboard(report, history)``) so it can be tested at a fixed width.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from loopprof.report import Report

SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 40
LATE_WARN = 0.10

# (label, value from a report, scale for the sparkline; None = autoscale, formatter)
Signal = tuple[str, Callable[[Report], "float | None"], "float | None", Callable[["float | None"], str]]


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:5.1f}%"


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:7.1f} ms"


def _tok_on_loop(r: Report) -> float | None:
    t = r.frontend.tokenization
    return None if t.time_fraction is None else t.time_fraction * (t.on_loop_fraction or 0.0)


SIGNALS: list[Signal] = [
    ("loop busy", lambda r: r.frontend.loop.busy_fraction, 1.0, _pct),
    ("loop lag p99", lambda r: r.frontend.loop.lag_ms.p99, None, _ms),
    ("GIL held", lambda r: r.frontend.gil.held_fraction, 1.0, _pct),
    ("GC time", lambda r: r.frontend.gc.time_fraction, 1.0, _pct),
    ("tokenization", lambda r: r.frontend.tokenization.time_fraction, 1.0, _pct),
    ("  on the loop", _tok_on_loop, 1.0, _pct),
    ("engine busy", lambda r: r.engine.busy_fraction, 1.0, _pct),
]


def sparkline(values: Iterable[float | None], scale: float | None = None) -> str:
    vals = list(values)
    top = scale if scale is not None else max((v for v in vals if v is not None), default=0.0)
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif top <= 0:
            out.append(SPARK[0])
        else:
            out.append(SPARK[min(len(SPARK) - 1, max(0, int(v / top * (len(SPARK) - 1) + 0.5)))])
    return "".join(out)


def health_line(report: Report) -> str | None:
    """The line that says the numbers may be wrong: a late sampler or errors."""
    h = report.sampler
    parts = []
    if h.late_fraction is not None and h.late_fraction > LATE_WARN:
        parts.append(f"sampler is falling behind ({h.late_fraction * 100:.0f}% late): lower --rate")
    if h.errors:
        parts.append("errors: " + "; ".join(h.errors[:3]))
    return " | ".join(parts) if parts else None


def dashboard(report: Report, history: dict[str, deque[float | None]], duration_s: float | None) -> RenderableType:
    total = f"/{duration_s:.0f}" if duration_s else ""
    head = Text(f"loopprof attach {report.target.pid}  ·  {report.duration_s:.0f}{total} s  ·  Ctrl-C to stop")
    procs = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for col in ("pid", "role", "cpu", "command"):
        procs.add_column(col)
    for p in report.target.processes:
        cpu = "n/a" if p.cpu_fraction is None else f"{p.cpu_fraction * 100:.0f}%"
        procs.add_row(str(p.pid), p.role, cpu, p.cmdline[:60])
    sig = Table(box=None, show_header=False, pad_edge=False)
    sig.add_column("signal")
    sig.add_column("value", justify="right")
    sig.add_column("trend")
    for label, get, scale, fmt in SIGNALS:
        sig.add_row(label, fmt(get(report)), sparkline(history.get(label, ()), scale))
    v = report.verdict
    verdict = Text(f"running verdict: {v.bottleneck} (confidence {v.confidence:.2f})", style="bold")
    if v.reasons:
        verdict.append("\n" + "; ".join(v.reasons[:3]), style="dim")
    parts: list[RenderableType] = [head, procs, sig, verdict]
    warn = health_line(report)
    if warn:
        parts.append(Text(warn, style="bold yellow"))
    return Panel(Group(*parts), title="loopprof", border_style="cyan")


def plain_line(report: Report) -> str:
    fe, v = report.frontend, report.verdict
    line = (
        f"[{report.duration_s:6.1f}s] loop busy {_pct(fe.loop.busy_fraction).strip()} "
        f"lag p99 {_ms(fe.loop.lag_ms.p99).strip()} GIL {_pct(fe.gil.held_fraction).strip()} "
        f"tokenize {_pct(fe.tokenization.time_fraction).strip()} "
        f"engine {_pct(report.engine.busy_fraction).strip()} -> {v.bottleneck}"
    )
    warn = health_line(report)
    return f"{line}  !! {warn}" if warn else line


class LiveView:
    """Shows progress during the window and the final report after it."""

    def __init__(self, *, live: bool, duration_s: float | None, stream: TextIO | None = None) -> None:
        self.live = live
        self.duration_s = duration_s
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream)
        self.history: dict[str, deque[float | None]] = {s[0]: deque(maxlen=HISTORY) for s in SIGNALS}
        self._live: Live | None = None

    def start(self) -> None:
        if self.live:
            self._live = Live(Text("loopprof: starting…"), console=self.console, refresh_per_second=4, transient=True)
            self._live.start()

    def update(self, report: Report, elapsed_s: float) -> None:
        for label, get, _, _ in SIGNALS:
            self.history[label].append(get(report))
        if self._live is not None:
            self._live.update(dashboard(report, self.history, self.duration_s))
        else:
            print(plain_line(report), file=self.stream, flush=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def final(self, report: Report) -> None:
        try:
            from loopprof.renderers.console import print_report
        except ImportError:  # pragma: no cover - the lead's module
            print(plain_line(report), file=self.stream)
            return
        print_report(report, self.console)
