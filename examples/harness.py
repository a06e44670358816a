"""Start the stack as a subprocess for a test, a benchmark or the demo, and always clean it up.

    with running_stack("frontend_bound") as stack:
        before = stack.groundtruth()
        run_load(dataclasses.replace(scenario.load, port=stack.port))
        truth = window(before, stack.groundtruth())

Cleanup is by PID: every descendant seen while the stack ran is signalled, SIGTERM then SIGKILL, even when the
body raised. Nothing is matched by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from examples.loadgen import LoadResult, LoadSettings, run_load
from examples.scenarios import Scenario, get_scenario
from examples.stack.groundtruth import window
from examples.stack.settings import to_flags

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 90.0


class StackError(RuntimeError):
    """The stack did not come up; the message carries the tail of its stderr."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (the tests and benchmarks share this one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``; fail early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before port {port} opened")
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} not open after {timeout_s:.0f} s")


def _get_json(url: str, timeout_s: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


@dataclass
class StackHandle:
    """A running stack: ``pid`` is the process to attach to (the API server, or the launcher with several)."""

    scenario: Scenario
    port: int
    pid: int
    engine_pid: int
    api_server_pids: list[int]
    ready_s: float
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def groundtruth(self) -> dict[str, Any]:
        """The stack's own cumulative measurements (``GET /debug/groundtruth``)."""
        return _get_json(self.base_url + "/debug/groundtruth")

    def window(self, before: dict[str, Any]) -> dict[str, Any]:
        """Ground-truth shares from ``before`` until now."""
        return window(before, self.groundtruth())

    def drive(self, load: LoadSettings | None = None, idle_s: float = 3.0) -> tuple[dict[str, Any], LoadResult | None]:
        """Run the scenario's load (or ``load``; or sit idle ``idle_s`` when there is none) and return the
        ground-truth window over exactly that time, with the load generator's result."""
        load = load or self.scenario.load
        before = self.groundtruth()
        if load is None:
            time.sleep(idle_s)
            return self.window(before), None
        result = run_load(dataclasses.replace(load, port=self.port))
        return self.window(before), result

    def descendants(self) -> list[psutil.Process]:
        return _children(self.pid)


def wait_ready(proc: subprocess.Popen[bytes], port: int, api_servers: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/debug/groundtruth"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"stack exited with status {proc.returncode} before it was ready")
        try:
            truth = _get_json(url, timeout_s=2.0)
            if len(truth["frontends"]) >= api_servers:  # other API servers push their state every 0.5 s
                return truth
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.1)
    raise StackError(f"stack not ready on port {port} after {timeout_s:.0f} s")


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _terminate(targets: list[psutil.Process], timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after timeout_s. psutil.Process checks its create time, so a reused PID is safe."""
    procs = []
    for p in targets:
        try:
            p.send_signal(signal.SIGTERM)
            procs.append(p)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for p in alive:
        with suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout_s)


@contextmanager
def running_stack(
    scenario: str | Scenario,
    port: int | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
    quiet: bool = True,
    **overrides: Any,
) -> Iterator[StackHandle]:
    """Start ``python -m examples.stack`` for a scenario (``overrides`` are StackSettings fields), wait until
    every API server answers, yield a :class:`StackHandle`, then stop every process it started."""
    sc = get_scenario(scenario) if isinstance(scenario, str) else scenario
    port = port or free_port()
    argv = [sys.executable, "-m", "examples.stack", "--scenario", sc.name, "--port", str(port), *to_flags(overrides)]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.monotonic()
    # A file, not a pipe: a pipe nobody reads fills up and stalls the stack. Closed in the finally below.
    log = tempfile.TemporaryFile() if quiet else None  # noqa: SIM115
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stderr=log)
    main = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    try:
        count = overrides.get("api_server_count", sc.stack.api_server_count)
        try:
            truth = wait_ready(proc, port, count, ready_timeout_s)
        except StackError as exc:
            tail = ""
            if log is not None:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-2000:]
            raise StackError(f"{exc}\n{tail}") from None
        handle = StackHandle(
            scenario=sc,
            port=port,
            pid=proc.pid,
            engine_pid=truth["pids"]["engine"],
            api_server_pids=truth["pids"]["api_servers"],
            ready_s=time.monotonic() - t0,
            proc=proc,
        )
        seen.update((p.pid, p) for p in handle.descendants())
        yield handle
    finally:
        seen.update((p.pid, p) for p in _children(proc.pid))
        _terminate([main])  # the stack stops its own children on SIGTERM …
        _terminate(list(seen.values()))  # … and whatever is left is stopped here, by PID
        proc.wait()
        if log is not None:
            log.close()
