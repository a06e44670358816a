"""Drive py-spy as a subprocess and parse what it writes.

py-spy writes a recording only when it ends, so a live view needs short recordings back to back ("chunks"). A
chunk's cost is dominated by sampling, not by py-spy's start-up (measured: ~0.1 s of CPU per 100 samples/s·s
whether a recording lasts 1 s or 5 s), so 1-second chunks cost the same as one long recording.

Two recordings run side by side per process, because no py-spy format marks a sample as GIL-holding:

* a *timeline* (``chrometrace --threads --idle``): every thread, every tick, with timestamps, from which the
  loop thread, its busy stretches and their frames, and tokenization by thread are read;
* a *GIL* recording (``raw --threads --gil --idle``): only the samples whose thread held the GIL, so
  ``held_fraction = GIL samples / ticks``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from loopprof.attach.frames import Frame, Stack

_THREAD_ROOT = re.compile(r"^thread \((?:0x)?([0-9a-fA-F]+)\)(?::\s*(.*))?$")
_SAMPLES = re.compile(r"Samples: (\d+) Errors: (\d+)")
_BEHIND = re.compile(r"behind in sampling", re.IGNORECASE)


def find_pyspy() -> str | None:
    """The py-spy binary: ``$LOOPPROF_PYSPY``, then beside this Python (a venv), then on ``PATH``."""
    override = os.environ.get("LOOPPROF_PYSPY")
    if override:
        return override if os.access(override, os.X_OK) else None
    beside = Path(sys.executable).parent / "py-spy"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


@dataclass
class ThreadTimeline:
    """One thread's samples as consecutive segments ``(stack, duration_ms)``; identical stacks are merged."""

    os_tid: int
    name: str
    segments: list[tuple[Stack, float]] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        return sum(d for _, d in self.segments)


def _thread_root(name: str) -> tuple[int, str] | None:
    m = _THREAD_ROOT.match(name)
    if m is None:
        return None
    tid_text, thread_name = m.group(1), (m.group(2) or "").strip()
    tid = int(tid_text, 16) if name.startswith("thread (0x") else int(tid_text)
    return tid, thread_name or f"thread-{tid}"


def parse_chrometrace(events: list[dict]) -> dict[int, ThreadTimeline]:
    """Rebuild per-thread timelines from py-spy's chrometrace B/E events (``ts`` in µs)."""
    by_tid: dict[int, list[dict]] = {}
    for ev in events:
        if ev.get("ph") in ("B", "E"):
            by_tid.setdefault(ev.get("tid", 0), []).append(ev)
    out: dict[int, ThreadTimeline] = {}
    for evs in by_tid.values():
        evs.sort(key=lambda e: e["ts"])  # stable: B/E order within one ts is kept
        stack: list[Frame] = []
        timeline: ThreadTimeline | None = None
        last_ts: float | None = None
        for ev in evs:
            ts = float(ev["ts"])
            if timeline is not None and last_ts is not None and ts > last_ts and stack:
                timeline.segments.append((tuple(stack), (ts - last_ts) / 1000.0))
            last_ts = ts
            if ev["ph"] == "B":
                root = _thread_root(ev["name"]) if timeline is None or not stack else None
                if timeline is None and root is not None:
                    timeline = out.get(root[0]) or ThreadTimeline(root[0], root[1])
                    out[root[0]] = timeline
                    stack = []
                    continue
                if root is not None:
                    continue
                args = ev.get("args") or {}
                stack.append(Frame(ev["name"], args.get("filename", ""), int(args.get("line", 0))))
            elif stack:
                stack.pop()
    return out


def parse_raw(text: str) -> dict[tuple[int, str], int]:
    """py-spy's raw (collapsed) output with ``--threads`` → samples per (os_tid, thread name)."""
    counts: dict[tuple[int, str], int] = {}
    for line in text.splitlines():
        stack_text, _, n_text = line.rpartition(" ")
        if not stack_text or not n_text.isdigit():
            continue
        root = _thread_root(stack_text.split(";", 1)[0])
        key = root if root is not None else (0, "unknown")
        counts[key] = counts.get(key, 0) + int(n_text)
    return counts


@dataclass
class ChunkResult:
    """What one py-spy recording returned, and how healthy it was."""

    returncode: int
    stderr: str
    path: str
    samples: int | None = None
    errors: int = 0
    behind: bool = False

    @property
    def ok(self) -> bool:
        return self.samples is not None

    def error_line(self) -> str:
        for line in self.stderr.splitlines():
            if line.startswith("Error:"):
                return line[len("Error:") :].strip()
        return self.stderr.strip().splitlines()[-1] if self.stderr.strip() else f"py-spy exited {self.returncode}"


class Recording:
    """One running ``py-spy record`` subprocess writing to a temporary file."""

    def __init__(
        self, pyspy: str, pid: int, *, duration_s: int, rate_hz: int, fmt: str, gil: bool, workdir: str
    ) -> None:
        fd, self.path = tempfile.mkstemp(prefix=f"pyspy-{pid}-", suffix=f".{fmt}", dir=workdir)
        os.close(fd)
        cmd = [
            pyspy, "record", "--pid", str(pid), "--duration", str(duration_s), "--rate", str(rate_hz),
            "--format", fmt, "--threads", "--idle", "--nonblocking", "--output", self.path,
        ]  # fmt: skip
        if gil:
            cmd.append("--gil")
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def interrupt(self) -> None:
        """End the recording early; py-spy still writes what it has (it handles SIGINT like Ctrl-C)."""
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._proc.send_signal(signal.SIGINT)

    def wait(self, timeout_s: float) -> ChunkResult:
        try:
            err, _ = self._proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            err, _ = self._proc.communicate()
        result = ChunkResult(self._proc.returncode, err or "", self.path)
        m = _SAMPLES.search(result.stderr)
        if m:
            result.samples, result.errors = int(m.group(1)), int(m.group(2))
        result.behind = bool(_BEHIND.search(result.stderr))
        return result

    def read(self) -> str:
        try:
            return Path(self.path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def read_timeline(rec: Recording) -> dict[int, ThreadTimeline]:
    text = rec.read()
    if not text.strip():
        return {}
    try:
        events = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return parse_chrometrace(events if isinstance(events, list) else events.get("traceEvents", []))


def dump_text(pyspy: str, pid: int, timeout_s: float = 15.0) -> subprocess.CompletedProcess[str]:
    """``py-spy dump`` once: the cheapest full check that py-spy can read the target (13–56 ms)."""
    return subprocess.run(
        [pyspy, "dump", "--pid", str(pid), "--nonblocking"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


DUMP_ATTEMPTS = 5


def dump_threads(pyspy: str, pid: int, timeout_s: float = 15.0) -> list[tuple[int, str, Stack]] | None:
    """``py-spy dump --json`` → ``(os_tid, thread name, stack root-first)`` per thread, ``None`` on failure.

    A non-blocking read races a busy interpreter now and then, so a failed read is tried again a few times.
    """
    threads = None
    for _ in range(DUMP_ATTEMPTS):
        try:
            done = subprocess.run(
                [pyspy, "dump", "--pid", str(pid), "--json", "--nonblocking"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
            threads = json.loads(done.stdout) if done.returncode == 0 else None
        except (subprocess.TimeoutExpired, OSError, json.JSONDecodeError):
            return None
        if threads is not None:
            break
        time.sleep(0.05)
    if not isinstance(threads, list):
        return None
    out = []
    for t in threads:
        frames = [Frame(f.get("name", "?"), f.get("filename", ""), int(f.get("line", 0))) for f in t.get("frames", [])]
        out.append((int(t.get("os_thread_id") or 0), str(t.get("thread_name") or ""), tuple(reversed(frames))))
    return out
