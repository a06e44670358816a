"""EngineCore: a child process that batches every pending request each step and spends simulated GPU time.

The step is a busy-wait (how a CUDA synchronize spin looks from outside), so the process burns a core while
it steps. With nothing to do it blocks in ``zmq.Poller.poll`` on its input socket: "waiting for input".
Its ground truth is its own clock: ``busy_s`` is wall time not spent blocked in that poll.

Run by the frontend or launcher: ``python -m examples.stack.engine SETTINGS_JSON ADDRESS``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import zmq

from examples.stack import protocol
from examples.stack.settings import StackSettings

IDLE_POLL_MS = 500  # also how often an idle engine checks that its parent is alive


@dataclass
class _Request:
    client: bytes
    request_id: str
    prompt_len: int
    max_tokens: int
    generated: int = 0


@dataclass
class EngineStats:
    """Cumulative counters; a window's shares are differences of two snapshots."""

    started_t: float = field(default_factory=time.monotonic)
    busy_s: float = 0.0
    step_s: float = 0.0
    steps: int = 0
    tokens: int = 0
    requests_finished: int = 0
    batch_sum: int = 0
    waiting_sum: int = 0  # summed per step: mean waiting = waiting_sum / steps

    def snapshot(self, running: int, waiting: int) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "t": time.monotonic(),
            "started_t": self.started_t,
            "busy_s": self.busy_s,
            "step_s": self.step_s,
            "steps": self.steps,
            "tokens": self.tokens,
            "requests_finished": self.requests_finished,
            "batch_sum": self.batch_sum,
            "waiting_sum": self.waiting_sum,
            "running": running,
            "waiting": waiting,
        }


def spin(seconds: float) -> None:
    """Hold the CPU until the deadline, like a host thread spinning on a CUDA event."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


class EngineCore:
    def __init__(self, settings: StackSettings, address: str) -> None:
        self.s = settings
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(address)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.waiting: deque[_Request] = deque()
        self.running: list[_Request] = []
        self.stats = EngineStats()
        self.frontends: dict[int, dict[str, Any]] = {}  # pid -> latest pushed frontend snapshot
        self.parent = os.getppid()

    def _handle(self, client: bytes, msg: list[Any]) -> None:
        kind = msg[0]
        if kind == protocol.ADD:
            self.waiting.append(_Request(client, msg[1], len(msg[2]), msg[3]))
        elif kind == protocol.ABORT:
            self.waiting = deque(r for r in self.waiting if r.request_id != msg[1])
            self.running = [r for r in self.running if r.request_id != msg[1]]
        elif kind == protocol.STATS:
            if msg[1]:
                self.frontends[msg[1]["pid"]] = msg[1]
            if msg[2]:
                snap = self.stats.snapshot(len(self.running), len(self.waiting))
                self.sock.send_multipart([client, protocol.pack([protocol.STATS, snap, self.frontends])])
        elif kind == protocol.HELLO:
            self.sock.send_multipart([client, protocol.pack([protocol.HELLO, os.getpid()])])

    def _drain(self) -> None:
        while self.sock.poll(0):
            client, payload = self.sock.recv_multipart()
            self._handle(client, protocol.unpack(payload))

    def _step(self) -> None:
        """Schedule up to max_num_seqs, spend the simulated GPU time, emit one token per running request."""
        t0 = time.monotonic()
        prefill_tokens = 0
        while self.waiting and len(self.running) < self.s.max_num_seqs:
            req = self.waiting.popleft()
            prefill_tokens += req.prompt_len
            self.running.append(req)
        gpu_ms = self.s.step_ms + self.s.per_seq_ms * len(self.running)
        spin((gpu_ms + self.s.prefill_ms_per_1k_tokens * prefill_tokens / 1000.0) / 1000.0)
        outputs: dict[bytes, list[list[Any]]] = {}
        still: list[_Request] = []
        for req in self.running:
            req.generated += 1
            token = 3 + (hash((req.request_id, req.generated)) % (self.s.vocab_size - 3))  # skip special ids
            finished = req.generated >= req.max_tokens
            outputs.setdefault(req.client, []).append([req.request_id, token, finished])
            if finished:
                self.stats.requests_finished += 1
            else:
                still.append(req)
        kv_used = sum(r.prompt_len + r.generated for r in still)
        for client, items in outputs.items():
            msg = [protocol.OUT, items, len(still), len(self.waiting), kv_used / self.s.kv_capacity_tokens]
            self.sock.send_multipart([client, protocol.pack(msg)])
        self.stats.steps += 1
        self.stats.tokens += len(self.running)
        self.stats.batch_sum += len(self.running)
        self.stats.waiting_sum += len(self.waiting)
        self.running = still
        self.stats.step_s += time.monotonic() - t0

    def run(self) -> None:
        last_alive_check = time.monotonic()
        busy_since = time.monotonic()
        while True:
            if not self.running and not self.waiting:
                self.stats.busy_s += time.monotonic() - busy_since
                self.poller.poll(IDLE_POLL_MS)  # waiting for input
                busy_since = time.monotonic()
            if busy_since - last_alive_check > 1.0 or not (self.running or self.waiting):
                last_alive_check = busy_since
                if os.getppid() != self.parent:
                    return  # orphaned: the API server is gone
            self._drain()
            if self.running or self.waiting:
                self._step()
            self.stats.busy_s += time.monotonic() - busy_since
            busy_since = time.monotonic()


def start_engine(settings: StackSettings, address: str) -> subprocess.Popen[bytes]:
    """Start EngineCore as a child process of the caller (the API server, or the launcher)."""
    return subprocess.Popen([sys.executable, "-m", "examples.stack.engine", settings.to_json(), address])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    settings = StackSettings.from_json(args[0])
    engine = EngineCore(settings, args[1])
    try:
        engine.run()
    except KeyboardInterrupt:
        pass
    finally:
        engine.sock.close(0)
        engine.ctx.term()


if __name__ == "__main__":
    main()
