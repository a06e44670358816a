"""``loopprof run`` with commands that are not Python, cannot start, or have a child the agent cannot run in."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from loopprof.launch.wrapper import run_command

PY39 = Path("/root/.pyenv/versions/3.9.18/bin/python")


def test_not_python_runs_and_passes_status(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert run_command(["sh", "-c", "sleep 0.3; exit 3"], json_path=str(out), otlp_url=None, live=False) == 3
    report = json.loads(out.read_text())
    assert report["source"] == "run"
    assert any("started no Python process" in n for n in report["notes"])
    assert report["verdict"]["bottleneck"] == "inconclusive"


def test_command_not_found_is_127_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(["no-such-command-xyz"], json_path=None, otlp_url=None, live=False) == 127
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["loopprof: no-such-command-xyz: command not found (check the name and PATH)"]


def test_signal_death_maps_to_128_plus_n() -> None:
    assert run_command(["sh", "-c", "kill -TERM $$"], json_path=None, otlp_url=None, live=False) == 143


@pytest.mark.skipif(not PY39.exists(), reason="needs a Python < 3.10 (pyenv 3.9.18)")
def test_child_where_agent_cannot_start_still_runs_and_is_named(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('ok')"
    parent = f"import subprocess, sys; sys.exit(subprocess.call([{str(PY39)!r}, '-c', {code!r}]) + 5)"
    assert run_command([sys.executable, "-c", parent], json_path=str(out), otlp_url=None, live=False) == 5
    assert marker.read_text() == "ok"
    report = json.loads(out.read_text())
    errors = " ".join(report["sampler"]["errors"])
    assert "too old for the loopprof agent" in errors and "3.9" in errors
