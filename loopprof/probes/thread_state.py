"""What one OS thread is doing right now, read from ``/proc/PID/task/TID/syscall``.

This is the one method that works the same for asyncio, uvloop, the embedded agent and ``attach``: a thread
parked in ``epoll_wait``/``poll``/``select`` is an event loop waiting for work (or an engine waiting for input on
its socket); a thread that is running, or blocked in any other call (``nanosleep``, a ``futex`` for the GIL, a
disk read), is busy. A kept-open descriptor read with ``pread`` costs about 3 µs and never stops the target.
Linux only; elsewhere :func:`open_thread_state` returns ``None`` and callers report the value as not measured.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from typing import Literal

State = Literal["running", "polling", "blocked", "gone"]

# Syscall numbers that mean "waiting for I/O readiness" on the architectures we ship for.
_POLL_SYSCALLS: dict[str, frozenset[int]] = {
    # x86_64: poll 7, select 23, epoll_wait 232, pselect6 270, ppoll 271, epoll_pwait 281, epoll_pwait2 441
    "x86_64": frozenset({7, 23, 232, 270, 271, 281, 441}),
    # aarch64 (generic table): pselect6 72, ppoll 73, epoll_pwait 22, epoll_pwait2 441
    "aarch64": frozenset({22, 72, 73, 441}),
}
_FUTEX = {"x86_64": 202, "aarch64": 98}
POLL_SYSCALLS = _POLL_SYSCALLS.get(platform.machine(), frozenset())
FUTEX_SYSCALL = _FUTEX.get(platform.machine())


@dataclass
class StateCounts:
    """Samples of one thread by state; ``busy_fraction`` is the share not parked in a poll."""

    running: int = 0
    polling: int = 0
    blocked: int = 0
    futex: int = 0  # part of ``blocked``: waiting on a lock, very often the GIL

    @property
    def samples(self) -> int:
        return self.running + self.polling + self.blocked

    @property
    def busy_fraction(self) -> float | None:
        n = self.samples
        return None if n == 0 else (self.running + self.blocked) / n

    def add(self, state: State, syscall: int | None) -> None:
        if state == "running":
            self.running += 1
        elif state == "polling":
            self.polling += 1
        elif state == "blocked":
            self.blocked += 1
            if syscall == FUTEX_SYSCALL:
                self.futex += 1


class ThreadState:
    """A kept-open handle on one thread's ``syscall`` file."""

    def __init__(self, fd: int, pid: int, tid: int) -> None:
        self._fd = fd
        self.pid = pid
        self.tid = tid

    def read(self) -> tuple[State, int | None]:
        """Return the thread's state and, when blocked, the syscall number it is blocked in."""
        try:
            raw = os.pread(self._fd, 32, 0)
        except OSError:
            return "gone", None
        if not raw:
            return "gone", None
        if raw.startswith(b"running"):
            return "running", None
        head = raw.split(b" ", 1)[0]
        try:
            nr = int(head)
        except ValueError:
            return "running", None
        if nr < 0:  # -1: not in a syscall (preempted in user space)
            return "running", None
        return ("polling" if nr in POLL_SYSCALLS else "blocked"), nr

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def __enter__(self) -> ThreadState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_thread_state(pid: int, tid: int) -> ThreadState | None:
    """Open the thread's syscall file, or ``None`` if this platform or our permissions do not allow it.

    Raises ``PermissionError`` when the file exists but ptrace rules forbid reading it, so callers can
    explain which permission is missing.
    """
    if not POLL_SYSCALLS:
        return None
    try:
        fd = os.open(f"/proc/{pid}/task/{tid}/syscall", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    handle = ThreadState(fd, pid, tid)
    state, _ = handle.read()
    if state == "gone":
        handle.close()
        # A read that fails right after open is a permission problem (EACCES from ptrace_may_access).
        raise PermissionError(f"cannot read /proc/{pid}/task/{tid}/syscall")
    return handle
