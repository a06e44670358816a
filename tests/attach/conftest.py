"""Start real target servers for attach tests and always stop them (by PID) even when a test fails."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER = Path(__file__).with_name("target_server.py")


@contextmanager
def target_server(tmp: Path, *args: str, agent_inside: bool = True) -> Iterator[tuple[subprocess.Popen, Path, Path]]:
    truth, agent = tmp / "truth.json", tmp / "agent.json"
    cmd = [sys.executable, str(SERVER), "--truth", str(truth), *args]
    if agent_inside:
        cmd += ["--agent-json", str(agent)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = "x"
        while line and line.strip() != "ready":  # the tokenizer trainer prints progress lines first
            line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "ready", f"target did not start: {proc.stderr.read() if proc.stderr else ''}"
        time.sleep(0.3)
        yield proc, truth, agent
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_json(path: Path, proc: subprocess.Popen, timeout_s: float = 30.0) -> dict:
    proc.wait(timeout=timeout_s)
    return json.loads(path.read_text())


@pytest.fixture
def server(tmp_path: Path):
    return lambda *args, **kw: target_server(tmp_path, *args, **kw)
