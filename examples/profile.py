"""Run ``loopprof attach`` on a live stack as a subprocess and read back its JSON verdict.

Shared by the demo and the scenario benchmark. A subprocess, not an import: this is exactly what an operator
runs, and a profiler bug cannot take the load generator down with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_GRACE_S = 30.0  # py-spy start, discovery and rendering on a loaded 2-core machine


@dataclass
class ProfileOutcome:
    available: bool  # False: this checkout has no working `loopprof attach` yet
    report: dict[str, Any] | None
    output: str  # what loopprof printed (its rendered verdict), or why there is none

    @property
    def bottleneck(self) -> str | None:
        return (self.report or {}).get("verdict", {}).get("bottleneck")


def attach_available() -> bool:
    probe = subprocess.run(
        [sys.executable, "-m", "loopprof", "attach", "--help"], capture_output=True, text=True, timeout=60
    )
    return probe.returncode == 0 and "PID" in probe.stdout


def profile_pid(pid: int, seconds: float, metrics_url: str | None = None, stream: bool = False) -> ProfileOutcome:
    """``loopprof attach PID --duration S --json …``; never raises for a missing or failing loopprof.

    ``stream``: attach writes to this terminal as it runs (its live dashboard on a TTY, progress lines otherwise)
    instead of being captured; the outcome then carries the report but no text.
    """
    if not attach_available():
        return ProfileOutcome(False, None, "`python -m loopprof attach` is not available in this checkout yet")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.json"
        argv = [sys.executable, "-m", "loopprof", "attach", str(pid), "--duration", str(seconds), "--json", str(path)]
        if not stream:
            argv.append("--no-live")
        if metrics_url:
            argv += ["--metrics-url", metrics_url]
        try:
            proc = subprocess.run(argv, capture_output=not stream, text=True, timeout=seconds + START_GRACE_S)
        except subprocess.TimeoutExpired:
            return ProfileOutcome(True, None, f"loopprof attach did not finish within {seconds + START_GRACE_S:.0f} s")
        report = json.loads(path.read_text()) if path.exists() else None
        text = (proc.stdout or "").strip() or (proc.stderr or "").strip()
        if proc.returncode != 0 and report is None:
            text = f"loopprof attach exited with {proc.returncode}: {proc.stderr.strip()[-500:]}"
        return ProfileOutcome(True, report, text)
