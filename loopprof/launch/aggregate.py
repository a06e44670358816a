"""What ``loopprof run`` knows about each process of COMMAND, and the report built from it.

Two sources feed it: the agents' messages from the private channel (hello / snapshot / bye / failed), and the
wrapper's own look at COMMAND's process tree with psutil, which finds the Python processes that never reported
(an isolated ``python -I``, an interpreter the agent cannot run in) so the report can name them. Frontend
numbers come from each frontend agent's first and last snapshot through the same ``frontend_window`` the
embedded agent uses; the engine's from the wrapper's out-of-process :class:`EngineProbe`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from loopprof.analysis.fleet import combine_frontends
from loopprof.discovery import role_from_name
from loopprof.report import Engine, Frontend, ProcessInfo, Report, SamplerHealth, Target

# Beyond discovery's names: an engine started as a module or script named "engine" (the example stack's
# ``python -m examples.stack.engine``).
ENGINE_MODULE = re.compile(r"[\s/.]engine(\.py)?(\s|$)")


@dataclass
class ProcessRecord:
    """One process of COMMAND's tree, as far as the wrapper has seen it."""

    pid: int
    ppid: int | None = None
    cmdline: str = ""
    python: str | None = None
    mp_name: str | None = None
    is_python: bool | None = None
    agent: str = "none"  # "running" | "failed" | "none"
    error: str | None = None
    first: dict[str, Any] | None = None  # first snapshot message (taken at install: interpreter start)
    last: dict[str, Any] | None = None
    snapshots: int = 0
    said_bye: bool = False
    connected: bool = False
    cpu_first: tuple[float, float] | None = None  # (monotonic s, cpu s)
    cpu_last: tuple[float, float] | None = None

    @property
    def has_loop(self) -> bool:
        return loop_attached(self.last)

    @property
    def role(self) -> str:
        names = " ".join(filter(None, [self.mp_name, self.cmdline]))
        named = role_from_name(names)
        if named in ("engine", "other") or ENGINE_MODULE.search(names):
            return named or "engine"
        # A frontend is a process whose event loop the agent watches (an API server: uvicorn workers, vLLM's
        # API servers); a supervisor without a loop (uvicorn's --workers manager) is "other".
        return "frontend" if self.has_loop else "other"

    @property
    def cpu_fraction(self) -> float | None:
        if self.cpu_first is None or self.cpu_last is None:
            return None
        wall = self.cpu_last[0] - self.cpu_first[0]
        return None if wall <= 0 else round(max(0.0, (self.cpu_last[1] - self.cpu_first[1]) / wall), 4)


def loop_attached(message: dict[str, Any] | None) -> bool:
    """Whether the agent's snapshot says it watches an event loop."""
    snap = (message or {}).get("snapshot") or {}
    return bool(snap.get("loop_kind"))


class Aggregator:
    """Thread-safe store of :class:`ProcessRecord` keyed by PID; ``handle`` is the channel's callback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[int, ProcessRecord] = {}
        self._conn_pid: dict[int, int] = {}

    def record(self, pid: int) -> ProcessRecord:
        rec = self.records.get(pid)
        if rec is None:
            rec = self.records[pid] = ProcessRecord(pid)
        return rec

    def handle(self, msg: dict[str, Any]) -> None:
        with self._lock:
            kind = msg.get("type")
            conn = msg.get("_conn")
            if kind == "closed":
                pid = self._conn_pid.pop(conn, None) if conn is not None else None
                if pid is not None:
                    self.record(pid).connected = False
                return
            pid = msg.get("pid")
            if not isinstance(pid, int):
                return
            rec = self.record(pid)
            if conn is not None:
                self._conn_pid[conn] = pid
            rec.ppid = msg.get("ppid", rec.ppid)
            rec.python = msg.get("python", rec.python)
            rec.mp_name = msg.get("mp_name") or rec.mp_name
            rec.is_python = True
            if not rec.cmdline and msg.get("argv"):
                rec.cmdline = " ".join(map(str, msg["argv"]))
            if kind == "failed":
                rec.agent, rec.error = "failed", str(msg.get("error") or "unknown error")
                return
            rec.agent, rec.connected = "running", kind != "bye"
            if msg.get("snapshot") is not None:
                if rec.first is None:
                    rec.first = msg
                rec.last = msg
                rec.snapshots += 1
            if msg.get("error"):
                rec.error = str(msg["error"])
            rec.said_bye = rec.said_bye or kind == "bye"

    def observe(self, pid: int, *, cmdline: str, is_python: bool, ppid: int | None, cpu_s: float | None) -> None:
        """What psutil saw of one process of the tree (the wrapper calls this about once a second)."""
        with self._lock:
            rec = self.record(pid)
            if cmdline and (" " in cmdline or not rec.cmdline):  # an exiting process shows only its name
                rec.cmdline = cmdline
            rec.is_python = rec.is_python or is_python
            rec.ppid = rec.ppid if rec.ppid is not None else ppid
            if cpu_s is not None:
                point = (time.monotonic(), cpu_s)
                rec.cpu_first = rec.cpu_first or point
                rec.cpu_last = point

    def copy(self) -> list[ProcessRecord]:
        with self._lock:
            return [ProcessRecord(**vars(r)) for r in self.records.values()]

    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for r in self.records.values() if r.connected)


def frontend_of(rec: ProcessRecord) -> Frontend | None:
    """One frontend process's section over its life (first snapshot at interpreter start → last)."""
    if rec.first is None or rec.last is None:
        return None
    try:
        from loopprof.analysis.frontend import frontend_window
    except ImportError:
        return None
    fe = frontend_window(rec.first["snapshot"], rec.last["snapshot"])
    fe.pid = rec.pid
    return fe


def missing_note(rec: ProcessRecord) -> str | None:
    """Why a Python process of the tree has no agent, in one line; ``None`` when it has one (or is not Python)."""
    what = f"PID {rec.pid} ({_short(rec.cmdline)})"
    if rec.agent == "failed":
        return f"no agent in {what}: {rec.error}; it ran unprofiled"
    if rec.agent == "none" and rec.is_python:
        return (
            f"no agent in {what}: it never reported (started with -I/-E or -S, so it ignored PYTHONPATH, "
            "or it replaced its environment); it ran unprofiled"
        )
    return None


def _short(cmdline: str, limit: int = 80) -> str:
    return cmdline if len(cmdline) <= limit else cmdline[: limit - 1] + "…"


@dataclass
class RunWindow:
    """What the wrapper measured around COMMAND itself."""

    command: list[str]
    pid: int
    started_at: str
    duration_s: float
    exit_status: int | None = None
    interrupted_by: str | None = None
    engine: Engine = field(default_factory=Engine)
    notes: list[str] = field(default_factory=list)


def build_report(window: RunWindow, records: list[ProcessRecord]) -> Report:
    """The ``source: "run"`` report from everything the wrapper collected."""
    from loopprof.analysis.verdict import ServerContext, decide

    report = Report(source="run", started_at=window.started_at, duration_s=round(window.duration_s, 3))
    tree = sorted(records, key=lambda r: r.pid)
    report.target = Target(
        pid=window.pid,
        python=next((r.python for r in tree if r.pid == window.pid and r.python), None)
        or next((r.python for r in tree if r.python), None),
        processes=[ProcessInfo(r.pid, r.role, r.cmdline, r.cpu_fraction) for r in tree],  # type: ignore[arg-type]
    )
    frontends = [fe for r in tree if r.role == "frontend" for fe in [frontend_of(r)] if fe is not None]
    if frontends:
        report.frontend = combine_frontends(frontends)
        if len(frontends) > 1:
            report.frontends = frontends
    report.engine = window.engine
    agents = [r for r in tree if r.agent == "running"]
    report.sampler = SamplerHealth(
        samples=sum(r.snapshots for r in agents),
        errors=[n for n in (missing_note(r) for r in tree) if n],
    )
    notes = list(window.notes)
    if not any(r.is_python for r in tree):
        notes.append(f"no agent: `{_short(' '.join(window.command))}` started no Python process")
    elif not agents:
        notes.append("no agent reported from any process of COMMAND")
    for r in agents:
        if not r.said_bye and not r.connected:
            notes.append(f"PID {r.pid} ended without a final snapshot (killed?): its last one is used")
    if window.interrupted_by:
        notes.append(f"stopped by {window.interrupted_by}, forwarded to COMMAND's process group")
    if window.exit_status is not None:
        notes.append(f"COMMAND exited with status {window.exit_status}")
    report.notes = notes
    report.partial = window.interrupted_by is not None
    context = ServerContext.of(report.target.processes, len(frontends))
    sampler = SamplerHealth(samples=report.sampler.samples, errors=report.sampler.errors) if agents else None
    report.verdict = decide(report.frontend, report.engine, sampler, context)
    return report


def this_python_root() -> str:
    """The directory that holds the ``loopprof`` package this wrapper runs from (given to the bootstrap)."""
    import loopprof

    paths = list(getattr(loopprof, "__path__", []))
    return os.path.dirname(os.path.abspath(paths[0])) if paths else ""
