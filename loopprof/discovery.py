"""Which processes make up the server, and what role each plays: frontend, engine or other.

Standalone (psutil only) because ``attach``, the ``run`` wrapper and the embedded agent all need it. Roles come
from, in order: the user's ``--engine`` / ``--frontend`` overrides; process titles that name a role (vLLM sets
``VLLM::EngineCore``, ``VLLM::Worker``, ``VLLM::APIServer`` with setproctitle); and position: the PID the user
gave is a frontend, its other Python children are ``other`` until a caller refines them with what their main
thread is doing (:func:`refine_role`: an event loop → frontend; waiting on a socket or queue → engine).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Sequence

import psutil

from loopprof.report import ProcessInfo, Role

ENGINE_NAMES: tuple[str, ...] = ("EngineCore", "VLLM::Worker", "VllmWorker")
FRONTEND_NAMES: tuple[str, ...] = ("APIServer", "uvicorn", "gunicorn", "hypercorn")
# Helper processes of the standard library that are never a frontend or an engine.
OTHER_MARKERS: tuple[str, ...] = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "semaphore_tracker")


def _integration_engine_names() -> tuple[str, ...]:
    try:
        from loopprof.integrations import vllm  # type: ignore[attr-defined]
    except ImportError:
        return ()
    names = getattr(vllm, "ENGINE_PROCESS_NAMES", ())
    return tuple(str(n) for n in names)


def engine_names() -> tuple[str, ...]:
    return (*_integration_engine_names(), *ENGINE_NAMES)


def cmdline_of(proc: psutil.Process) -> str:
    """The command line as ``ps`` shows it; a process title set by setproctitle replaces argv."""
    try:
        parts = proc.cmdline()
    except (psutil.Error, OSError):
        parts = []
    if parts:
        return " ".join(parts)
    try:
        return proc.name()
    except psutil.Error:
        return ""


def is_python(proc: psutil.Process) -> bool:
    """A CPython process: its executable or a mapped library is python/libpython."""
    try:
        exe = os.path.basename(proc.exe())
    except (psutil.Error, OSError):
        exe = ""
    if exe.startswith("python") or exe.startswith("pypy"):
        return True
    try:
        with open(f"/proc/{proc.pid}/maps", encoding="utf-8", errors="replace") as fh:
            return any("libpython" in line for line in fh)
    except OSError:
        return False


def role_from_name(cmdline: str) -> Role | None:
    if any(marker in cmdline for marker in OTHER_MARKERS):
        return "other"
    if any(name in cmdline for name in engine_names()):
        return "engine"
    if any(name in cmdline for name in FRONTEND_NAMES):
        return "frontend"
    return None


def discover(
    pid: int, *, engine_pids: Sequence[int] = (), frontend_pids: Sequence[int] = (), children: bool = True
) -> list[ProcessInfo]:
    """The target and its Python descendants with roles; overrides win. Raises ``psutil.NoSuchProcess``."""
    root = psutil.Process(pid)
    procs: list[psutil.Process] = [root]
    if children:
        with contextlib.suppress(psutil.Error):
            procs += [c for c in root.children(recursive=True) if is_python(c)]
    known = {p.pid for p in procs}
    for extra in (*engine_pids, *frontend_pids):
        if extra not in known:
            try:
                procs.append(psutil.Process(extra))
                known.add(extra)
            except psutil.Error:
                continue
    out: list[ProcessInfo] = []
    for proc in procs:
        cmd = cmdline_of(proc)
        role: Role
        if proc.pid in engine_pids:
            role = "engine"
        elif proc.pid in frontend_pids:
            role = "frontend"
        else:
            named = role_from_name(cmd)
            # The PID the user gave is the API server unless its title says otherwise.
            role = (named if named == "engine" else "frontend") if proc.pid == pid else (named or "other")
        out.append(ProcessInfo(pid=proc.pid, role=role, cmdline=cmd[:300]))
    return out


def refine_role(info: ProcessInfo, main_thread_kind: str | None, overridden: Iterable[int] = ()) -> None:
    """Use what a child's main thread does to settle an ``other``: an event loop → frontend; anything else → engine.

    A Python child of the API server that runs no event loop and is no standard-library helper serves the
    frontend: it is the engine whether this one look caught it waiting for input or in the middle of a step (an
    engine at capacity is almost never seen waiting). Only roles that came from position change; names and user
    overrides stay.
    """
    if info.pid in set(overridden) or info.role != "other" or role_from_name(info.cmdline) is not None:
        return
    if main_thread_kind == "loop":
        info.role = "frontend"
    elif main_thread_kind in ("waiting", "working"):
        info.role = "engine"


class CpuMeter:
    """Per-process CPU share over a window (``ProcessInfo.cpu_fraction``: 1.0 = one core)."""

    def __init__(self, pids: Iterable[int]) -> None:
        self._start: dict[int, tuple[float, float]] = {}
        for pid in pids:
            self.add(pid)

    def add(self, pid: int) -> None:
        if pid in self._start:
            return
        t = _cpu_s(pid)
        if t is not None:
            self._start[pid] = (time.monotonic(), t)

    def fraction(self, pid: int) -> float | None:
        start = self._start.get(pid)
        now_cpu = _cpu_s(pid)
        if start is None or now_cpu is None:
            return None
        wall = time.monotonic() - start[0]
        return None if wall <= 0 else round(max(0.0, (now_cpu - start[1]) / wall), 4)


def _cpu_s(pid: int) -> float | None:
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return None
