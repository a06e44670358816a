"""The private local channel between ``loopprof run`` and the agents in COMMAND's processes.

A Unix stream socket in a fresh ``mkdtemp`` directory (mode 0700; the socket itself 0600): only this user can
reach it, nothing listens on TCP, and the directory is removed when the run ends. Each agent opens one
connection and writes newline-delimited JSON messages (see :data:`MESSAGE_TYPES`); the wrapper reads them on
its own thread. A connection that closes without a ``bye`` means the process died without running ``atexit``;
its last snapshot (at most one interval old) is what the report uses.

The client half (:class:`Sender`) is stdlib-only and cheap, because it runs inside the profiled process: every
send has a timeout and any error just disables the channel; it never raises into the application.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from typing import Any

ENV_SOCKET = "LOOPPROF_RUN_SOCKET"  # path of the wrapper's socket, carried to every child by the environment
ENV_ROOT = "LOOPPROF_RUN_ROOT"  # directory holding the wrapper's own ``loopprof`` package
SOCKET_NAME = "agent.sock"
# hello: agent installed; snapshot: periodic Agent.snapshot(); bye: last snapshot at exit;
# failed: the bootstrap could not install the agent (the process runs on without it).
MESSAGE_TYPES = ("hello", "snapshot", "bye", "failed")
_MAX_LINE = 16 * 1024 * 1024  # a runaway peer cannot make the wrapper buffer without bound

Handler = Callable[[dict[str, Any]], None]


def private_dir() -> str:
    """A fresh 0700 directory whose path is short enough for ``sun_path`` (108 bytes)."""
    base = tempfile.gettempdir()
    if len(os.path.join(base, "loopprof-XXXXXXXX", SOCKET_NAME)) > 100:
        base = "/tmp"
    return tempfile.mkdtemp(prefix="loopprof-", dir=base)  # mkdtemp creates it with mode 0700


class ChannelServer:
    """Wrapper side: accepts agent connections and hands every decoded message to ``handler``.

    ``handler`` is called on the channel thread with the message plus ``"_conn"`` (a connection id) so the
    caller can tell processes apart before their ``hello`` arrives; on disconnect it receives
    ``{"type": "closed", "_conn": id}``.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.directory = private_dir()
        self.path = os.path.join(self.directory, SOCKET_NAME)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            self._listener.bind(self.path)  # created 0600 under the umask, no window where it is wider
        finally:
            os.umask(old_umask)
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._buffers: dict[int, bytearray] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopprof-run-channel", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop after draining what is already readable, then remove the private directory."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        for key in list(self._selector.get_map().values()):
            with contextlib.suppress(Exception):
                key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        self._wake_w.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _serve(self) -> None:
        while True:
            try:
                events = self._selector.select(timeout=0.5)
            except OSError:
                return
            for key, _ in events:
                if key.data is None:
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]
            if self._stop.is_set() and not events:
                return

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        self._buffers[conn.fileno()] = bytearray()
        self._selector.register(conn, selectors.EVENT_READ, "conn")

    def _read(self, conn: socket.socket) -> None:
        fd = conn.fileno()
        try:
            data = conn.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buf = self._buffers[fd]
        if data:
            buf.extend(data)
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                self._dispatch(line, fd)
            if len(buf) <= _MAX_LINE:
                return
        self._selector.unregister(conn)
        conn.close()
        del self._buffers[fd]
        self._deliver({"type": "closed", "_conn": fd})

    def _dispatch(self, line: bytes, fd: int) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if isinstance(msg, dict) and msg.get("type") in MESSAGE_TYPES:
            msg["_conn"] = fd
            self._deliver(msg)

    def _deliver(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # one bad message must not end the channel
            self._handler(msg)


class Sender:
    """Agent side: one connection to the wrapper. Thread-safe; every failure disables it quietly."""

    def __init__(self, path: str, timeout_s: float = 1.0) -> None:
        self._path = path
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._broken = False

    def send(self, msg: dict[str, Any]) -> bool:
        """Send one message; ``False`` when the wrapper is gone (the application carries on regardless)."""
        try:
            line = json.dumps(msg, separators=(",", ":"), default=str).encode() + b"\n"
        except (TypeError, ValueError):
            return False
        with self._lock:
            if self._broken:
                return False
            try:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(self._timeout_s)
                    sock.connect(self._path)
                    self._sock = sock
                self._sock.sendall(line)
                return True
            except OSError:
                self._broken = True
                self._close_locked()
                return False

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def forget(self) -> None:
        """After ``fork``: close this process's copy of the parent's connection, send nothing on it."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()  # closes only the child's descriptor; the parent's connection lives on
        self._sock = None
        self._lock = threading.Lock()
        self._broken = False

    def _close_locked(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
