"""``loopprof run -- COMMAND``: start COMMAND with the agent in every Python process, forward signals, report.

How it stays out of COMMAND's way:

* COMMAND inherits the terminal's stdin, stdout and stderr unchanged; loopprof never writes to stdout. While
  COMMAND runs, loopprof writes at most one short ``loopprof:`` status line to stderr every few seconds (only
  with ``live``), because a repainting dashboard cannot share a terminal with a server that logs; the full
  report is printed to stderr after COMMAND has exited.
* COMMAND runs in its own process group. Ctrl-C, SIGTERM, SIGHUP and SIGQUIT sent to the wrapper are
  forwarded to that whole group, exactly what a terminal does to its foreground job, so the server shuts down
  cleanly and its children go with it; the wrapper then waits for COMMAND, writes the report and returns
  COMMAND's exit status (128+N when a signal N ended it, as a shell reports it).
* The agent talks to the wrapper only over a private Unix socket; when anything about the agent fails, COMMAND
  runs exactly as it would without loopprof and the report names the process that has no agent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

from loopprof.launch.aggregate import Aggregator, RunWindow, build_report, this_python_root
from loopprof.launch.channel import ENV_ROOT, ENV_SOCKET, ChannelServer
from loopprof.report import Engine, Report

SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
POLL_S = 0.2  # how quickly the wrapper notices COMMAND's exit
TREE_INTERVAL_S = 1.0  # psutil look at COMMAND's process tree
STATUS_INTERVAL_S = 5.0  # live status line
DRAIN_S = 3.0  # after COMMAND exits: wait this long at most for the agents' final snapshots


def _say(message: str) -> None:
    print(f"loopprof: {message}", file=sys.stderr, flush=True)


def child_environment(socket_path: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """COMMAND's environment: the caller's, plus the bootstrap directory first on ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = SITE_DIR + (os.pathsep + existing if existing else "")
    env[ENV_SOCKET] = socket_path
    # The wrapper watches the engines and exports over OTLP itself, once for the whole tree.
    env["LOOPPROF_ENGINE_CHILDREN"] = "0"
    env["LOOPPROF_OTLP"] = "0"
    env[ENV_ROOT] = this_python_root()
    return env


def _resolve(argv: list[str]) -> tuple[str | None, int, str]:
    """The executable to start, or the shell's status (127 not found, 126 not executable) and a message."""
    name = argv[0]
    if os.sep in name:
        if not os.path.exists(name):
            return None, 127, f"{name}: no such file"
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            return None, 126, f"{name}: permission denied (not an executable file)"
        return name, 0, ""
    found = shutil.which(name)
    if found is None:
        return None, 127, f"{name}: command not found (check the name and PATH)"
    return found, 0, ""


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class _Run:
    """One COMMAND under loopprof: the child, the channel, the tree watch, the engine probes."""

    def __init__(self, argv: list[str], executable: str, live: bool, exporter: Any) -> None:
        self.argv = argv
        self.live = live
        self.exporter = exporter
        self.agg = Aggregator()
        self.server = ChannelServer(self.agg.handle)
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        self.t0 = time.monotonic()
        self.signal_name: str | None = None
        self.engine_probes: dict[int, Any] = {}
        self.engine_first: dict[int, dict[str, Any]] = {}
        self.metrics_url = engine_metrics_url(argv)
        self.server.start()
        kwargs: dict[str, Any] = {}
        if sys.version_info >= (3, 11):
            kwargs["process_group"] = 0
        else:
            kwargs["preexec_fn"] = os.setpgrp
        self.proc = subprocess.Popen(
            argv, executable=executable, env=child_environment(self.server.path), close_fds=True, **kwargs
        )

    # -- signals -------------------------------------------------------------------------------------------
    def forward(self, signum: int, _frame: Any = None) -> None:
        self.signal_name = self.signal_name or signal.Signals(signum).name
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    # -- the watch loop ------------------------------------------------------------------------------------
    def watch(self) -> int:
        next_tree = next_status = time.monotonic()
        while True:
            try:
                returncode = self.proc.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now >= next_tree:
                next_tree = now + TREE_INTERVAL_S
                self.look_at_tree()
                if self.exporter is not None:
                    self.exporter.update(self.report(None))
            if self.live and now >= next_status:
                next_status = now + STATUS_INTERVAL_S
                if now - self.t0 > 1.0:
                    _say(status_line(self.report(None)))
        self.look_at_tree()
        deadline = time.monotonic() + DRAIN_S
        while self.agg.open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        return returncode

    def look_at_tree(self) -> None:
        """Record every process of COMMAND's tree; find listeners (frontends) and engines to sample."""
        import psutil

        from loopprof.discovery import cmdline_of, is_python

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                with p.oneshot():
                    cpu = p.cpu_times()
                    self.agg.observe(
                        p.pid, cmdline=cmdline_of(p), is_python=is_python(p), ppid=p.ppid(), cpu_s=cpu.user + cpu.system
                    )
            except psutil.Error:
                continue
        for rec in self.agg.copy():
            if rec.role == "engine" and rec.pid not in self.engine_probes:
                self._probe_engine(rec.pid)

    def _probe_engine(self, pid: int) -> None:
        try:
            from loopprof.probes.engine import EngineProbe
        except ImportError:
            self.engine_probes[pid] = None
            return
        # The engine's own queue gauges go with the engine core (the first engine process found).
        probe = EngineProbe([pid], metrics_url=None if self.engine_probes else self.metrics_url, gpu=True)
        probe.start()
        self.engine_probes[pid] = probe
        self.engine_first[pid] = probe.snapshot()

    def engine_section(self) -> Engine:
        """The engine core's window (the first engine process found), with every engine PID listed."""
        try:
            from loopprof.analysis.engine import engine_window
        except ImportError:
            return Engine()
        sections = [
            engine_window(self.engine_first[pid], probe.snapshot())
            for pid, probe in self.engine_probes.items()
            if probe is not None
        ]
        if not sections:
            return Engine()
        core = sections[0]
        core.pids = [pid for s in sections for pid in s.pids]
        return core

    def report(self, returncode: int | None) -> Report:
        window = RunWindow(
            command=self.argv,
            pid=self.proc.pid,
            started_at=self.started_at,
            duration_s=time.monotonic() - self.t0,
            exit_status=None if returncode is None else exit_status(returncode),
            interrupted_by=self.signal_name,
            engine=self.engine_section(),
        )
        return build_report(window, self.agg.copy())

    def close(self) -> None:
        for probe in self.engine_probes.values():
            if probe is not None:
                probe.stop()
        self.server.close()


def status_line(report: Report) -> str:
    fe, eng = report.frontend, report.engine
    n_fe = max(len(report.frontends), 1 if fe.loop.busy_fraction is not None else 0)
    busy = "n/a" if fe.loop.busy_fraction is None else f"{fe.loop.busy_fraction:.0%}"
    p99 = "n/a" if fe.loop.lag_ms.p99 is None else f"{fe.loop.lag_ms.p99:.1f} ms"
    eng_busy = "n/a" if eng.busy_fraction is None else f"{eng.busy_fraction:.0%}"
    return (
        f"{report.duration_s:.0f}s  frontends {n_fe}: loop busy {busy}, lag p99 {p99}  |  engine busy {eng_busy}"
        f"  |  processes {len(report.target.processes)}"
    )


def _print_final(report: Report) -> None:
    try:
        from rich.console import Console

        from loopprof.renderers.console import print_report

        print_report(report, Console(stderr=True))
    except Exception:
        _say(f"verdict: {report.verdict.bottleneck} ({'; '.join(report.verdict.reasons)})")


def engine_metrics_url(argv: list[str]) -> str | None:
    """The engine's Prometheus endpoint: ``LOOPPROF_METRICS_URL``, else vLLM's, read off its command line."""
    from loopprof.config import AgentConfig
    from loopprof.integrations import vllm

    return AgentConfig.from_env().metrics_url or vllm.metrics_url(argv)


def run_command(argv: list[str], *, json_path: str | None, otlp_url: str | None, live: bool) -> int:
    """Run ``argv`` under loopprof; return COMMAND's own exit status (2: bad usage, 126/127: cannot start)."""
    if not argv:
        _say("run needs a command after --, e.g. `loopprof run -- uvicorn app:app`")
        return 2
    executable, status, why = _resolve(argv)
    if executable is None:
        _say(why)
        return status
    from loopprof.export import ExporterError, exporter_from_options

    try:
        exporter = exporter_from_options(otlp_url)  # None unless --otlp or OTEL_EXPORTER_OTLP_* asks for export
    except ExporterError as exc:
        _say(str(exc))
        return 2
    previous = {s: signal.getsignal(s) for s in FORWARDED_SIGNALS}
    try:
        run = _Run(argv, executable, live, exporter)
    except OSError as exc:
        _say(f"cannot start {argv[0]}: {exc.strerror or exc}")
        return 126
    try:
        for s in FORWARDED_SIGNALS:
            signal.signal(s, run.forward)
        returncode = run.watch()
        report = run.report(returncode)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        run.close()
    if json_path:
        try:
            report.write(json_path)
        except OSError as exc:
            _say(f"cannot write the report to {json_path}: {exc.strerror or exc}")
    if exporter is not None:
        exporter.update(report)
        exporter.shutdown()
    _print_final(report)
    return exit_status(returncode)
