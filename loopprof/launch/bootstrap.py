"""Install the in-process agent in this interpreter and stream its snapshots to a ``loopprof run`` wrapper.

``loopprof run`` calls :func:`install` from ``sitecustomize`` at interpreter start, in COMMAND and in every
Python process it spawns. The same function is the entry point for injecting the agent into an interpreter
that is already running, with Python 3.14's ``sys.remote_exec`` (PEP 768): a script such as ::

    import loopprof.launch.bootstrap as b; b.install("/tmp/loopprof-XXXX/agent.sock")

run with ``sys.remote_exec(pid, script_path)`` executes in the target's main thread at its next safe point;
:func:`install` then also attaches to the event loop running on that thread, if any (its GC counts start at
injection time instead of interpreter start).

Everything here is guarded: a failure sends one ``failed`` message to the wrapper (so the report can name the
process that has no agent) and returns ``False``; it never raises into the application.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from typing import Any

from loopprof.launch.channel import ENV_SOCKET, Sender

INTERVAL_S = 1.0  # how often a snapshot is streamed to the wrapper

_installed: _Installed | None = None
_install_lock = threading.Lock()


def identity() -> dict[str, Any]:
    """Who this process is, for the wrapper's role decision (the wrapper adds what psutil can see)."""
    mp = sys.modules.get("multiprocessing")
    mp_name = None
    if mp is not None:
        try:
            mp_name = mp.current_process().name
        except Exception:
            mp_name = None
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "python": ".".join(map(str, sys.version_info[:3])),
        "executable": sys.executable,
        "argv": list(getattr(sys, "orig_argv", sys.argv)),
        "mp_name": mp_name,
    }


def failure_message(error: str) -> dict[str, Any]:
    return {"type": "failed", "error": error, **identity()}


class _Installed:
    """The agent of this process plus the thread that streams its snapshots."""

    def __init__(self, path: str, agent: Any, interval_s: float) -> None:
        self.path = path
        self.agent = agent
        self.interval_s = interval_s
        self.sender = Sender(path)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.t0_mono_s = time.monotonic()

    def message(self, kind: str) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": kind, "t_mono_s": time.monotonic(), **identity()}
        try:
            msg["snapshot"] = self.agent.snapshot()
        except Exception as exc:  # the agent's problem must not end the stream
            msg["snapshot"] = None
            msg["error"] = f"snapshot failed: {type(exc).__name__}: {exc}"
        return msg

    def start_stream(self) -> None:
        self.sender.send(self.message("hello"))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._stream, name="loopprof-run-sender", daemon=True)
        self.thread.start()

    def _stream(self) -> None:
        while not self.stop.wait(self.interval_s):
            if not self.sender.send(self.message("snapshot")):
                return  # the wrapper is gone; the application carries on unobserved

    def send_final(self) -> None:
        """A snapshot at the moment the loop stops: the last one a server killed by its own SIGTERM gets out."""
        self.sender.send(self.message("snapshot"))

    def at_exit(self) -> None:
        self.stop.set()
        self.sender.send(self.message("bye"))
        self.sender.close()

    def after_fork_in_child(self) -> None:
        """A forked child is a new process: new connection, new hello, new stream thread."""
        self.sender.forget()
        self.t0_mono_s = time.monotonic()
        self.start_stream()


def _start_agent() -> Any:
    """Create and start the agent so it catches the first event loop whenever one starts."""
    from loopprof.agent import Agent
    from loopprof.config import AgentConfig

    agent = Agent(AgentConfig.from_env())
    agent.start()
    _attach_running_loop(agent)
    return agent


def _attach_running_loop(agent: Any) -> None:
    """The ``remote_exec`` case: a loop may already be running on this thread."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    agent.attach_loop(loop)


def install(socket_path: str | None = None, *, interval_s: float = INTERVAL_S) -> bool:
    """Install the agent once in this interpreter and stream to the wrapper at ``socket_path``.

    ``socket_path`` defaults to ``$LOOPPROF_RUN_SOCKET``. Returns ``True`` when the agent runs; on any failure
    the wrapper gets a ``failed`` message naming the reason and the application carries on.
    """
    global _installed
    path = socket_path or os.environ.get(ENV_SOCKET)
    if not path:
        return False
    with _install_lock:
        if _installed is not None:
            return True
        try:
            state = _Installed(path, _start_agent(), interval_s)
            state.start_stream()
            state.agent.on_loop_stop(state.send_final)
            atexit.register(state.at_exit)
            os.register_at_fork(after_in_child=state.after_fork_in_child)
        except Exception as exc:
            Sender(path).send(failure_message(f"{type(exc).__name__}: {exc}"))
            return False
        _installed = state
        return True
