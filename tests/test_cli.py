"""The CLI as a user meets it: real subprocesses, exit statuses, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loopprof.report import Report, Verdict

DATA = Path(__file__).parent / "data"


def loopprof(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopprof", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_help_teaches_every_verb() -> None:
    out = loopprof("--help")
    assert out.returncode == 0
    for verb in ("attach", "run", "report"):
        assert verb in out.stdout
    assert "examples:" in out.stdout


def test_no_verb_is_bad_usage() -> None:
    assert loopprof().returncode == 2


def test_bad_pid_is_bad_usage() -> None:
    out = loopprof("attach", "not-a-pid")
    assert out.returncode == 2
    assert "expected a process id" in out.stderr


def test_report_renders_a_saved_report() -> None:
    out = loopprof("report", str(DATA / "frontend_bound.json"))
    assert out.returncode == 0, out.stderr
    assert "The Python frontend is the bottleneck" in out.stdout
    assert "API-server processes" in out.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "no such report file"), ("garbage", "is not JSON"), ('{"schema": "x/2"}', "unsupported report schema")],
)
def test_report_on_bad_file_is_one_line_exit_1(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    out = loopprof("report", str(path))
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("loopprof: ") and needle in lines[0]
    assert "Traceback" not in out.stderr


def test_golden_reports_are_valid_and_rendered_verdicts_match(tmp_path: Path) -> None:
    for path in sorted(DATA.glob("*.json")):
        report = Report.from_dict(json.loads(path.read_text()))
        assert isinstance(report.verdict, Verdict)
        out = loopprof("report", str(path))
        assert out.returncode == 0, (path, out.stderr)
