"""Every way a target cannot be profiled ends in one line on stderr, exit 1, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from loopprof.attach.errors import explain_pyspy_failure
from tests.attach.conftest import REPO


def attach_cli(pid: int, env: dict[str, str] | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    code = (
        "import sys; from loopprof.attach.session import run_attach; "
        f"sys.exit(run_attach({pid}, duration_s=2, rate_hz=50, json_path=None, otlp_url=None, live=False, "
        "engine_pids=[], frontend_pids=[], metrics_url=None))"
    )
    cmd = [sys.executable, "-c", code]
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loopprof: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_no_such_pid() -> None:
    p = subprocess.Popen(["true"])
    p.wait()
    assert "no such process" in one_line(attach_cli(p.pid))


def test_not_a_python_process() -> None:
    p = subprocess.Popen(["sleep", "30"])
    try:
        assert "is not a Python process" in one_line(attach_cli(p.pid))
    finally:
        p.kill()
        p.wait()


def test_pyspy_missing() -> None:
    line = one_line(attach_cli(os.getpid(), env={"LOOPPROF_PYSPY": "/nonexistent/py-spy"}))
    assert "pip install py-spy" in line


def _runs_as_nobody() -> bool:
    """This interpreter can start as ``nobody`` (a pyenv build under /root may not find its libpython then)."""
    done = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=65534", "--clear-groups", sys.executable, "-c", "import loopprof"],
        cwd=REPO, capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop to nobody")
def test_permission_denied_explains_ptrace() -> None:
    if not _runs_as_nobody():
        pytest.skip(f"{sys.executable} cannot run as nobody on this machine (its files are not readable to it)")
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        line = one_line(attach_cli(target.pid, user="nobody"))
        assert "permission denied" in line and "CAP_SYS_PTRACE" in line and "ptrace_scope" in line
    finally:
        target.kill()
        target.wait()


def test_unsupported_python_version_advice() -> None:
    # py-spy's own message for an interpreter it cannot read (no such interpreter is installed here to run).
    err = explain_pyspy_failure(os.getpid(), "Error: Unsupported version of Python: 3.99.0\n")
    assert "3.99.0" in str(err) and "pip install -U py-spy" in str(err) and "\n" not in str(err)


def test_a_transient_nonblocking_read_failure_is_retried(tmp_path) -> None:
    """py-spy --nonblocking sometimes reads a busy interpreter mid-change; one such miss must not end attach."""
    from loopprof.attach.errors import check_target

    counter = tmp_path / "calls"
    fake = tmp_path / "py-spy"
    fake.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}\n"
        'if [ "$n" = 0 ]; then echo "Error: Failed to get stack traces" >&2; exit 1; fi\n'
        'echo "Process 1: python x.py"; echo "Python v3.11.7 (/usr/bin/python3.11)"\n'
    )
    fake.chmod(0o755)
    assert check_target(os.getpid(), str(fake)) == "3.11.7"
    assert counter.read_text().strip() == "2"
