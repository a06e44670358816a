"""Helpers for the ``loopprof run`` tests: start the wrapper as a real process and always clean up its tree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from examples.harness import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


__all__ = ["free_port", "wait_port"]  # re-exported for the tests and benchmarks/bench_run.py


def tree_pids(pid: int) -> set[int]:
    try:
        root = psutil.Process(pid)
        return {pid, *(c.pid for c in root.children(recursive=True))}
    except psutil.Error:
        return set()


class Wrapper:
    """``python -m loopprof run ...`` as a child of the test, with its stderr captured."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loopprof", "run", *args],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.seen: set[int] = set()

    def wait(self, timeout_s: float = 60.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout_s)
        return self.proc.returncode, out, err

    def kill_tree(self) -> None:
        pids = self.seen | tree_pids(self.proc.pid)
        for pid in pids:
            with contextlib.suppress(psutil.Error, OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.communicate(timeout=5)


@pytest.fixture
def wrapper() -> Iterator[type[Wrapper]]:
    made: list[Wrapper] = []

    class Tracked(Wrapper):
        def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*a, **kw)
            made.append(self)

    yield Tracked
    for w in made:
        w.kill_tree()
