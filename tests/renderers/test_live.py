import io

from rich.console import Console

from loopprof.renderers import live
from loopprof.report import Report


def sample_report() -> Report:
    r = Report(source="attach", started_at="2025-01-01T00:00:00+00:00", duration_s=3.0)
    r.target.pid = 42
    r.frontend.loop.busy_fraction = 0.5
    r.frontend.loop.lag_ms.p99 = 12.0
    r.sampler.late_fraction = 0.4
    r.sampler.errors = ["py-spy failed on process 42: boom"]
    return r


def test_sparkline_scales_and_marks_missing() -> None:
    assert live.sparkline([0.0, 0.5, 1.0, None], 1.0) == "▁▅█ "


def test_dashboard_renders_signals_and_warning() -> None:
    view = live.LiveView(live=False, duration_s=10, stream=io.StringIO())
    view.update(sample_report(), 3.0)
    out = io.StringIO()
    Console(file=out, width=100).print(live.dashboard(sample_report(), view.history, 10))
    text = out.getvalue()
    assert "loop busy" in text and "50.0%" in text and "falling behind" in text and "boom" in text


def test_plain_line_when_not_a_terminal() -> None:
    stream = io.StringIO()
    view = live.LiveView(live=False, duration_s=10, stream=stream)
    view.update(sample_report(), 3.0)
    line = stream.getvalue().strip()
    assert line.startswith("[") and "loop busy 50.0%" in line and "!! sampler is falling behind" in line
