"""Is the engine working or waiting for the frontend? Sampled from outside the engine, on loopprof's thread.

Process CPU is not a measure of engine work (vLLM's EngineCore and workers spin-wait), so the primary signal is
the state of each engine process's main thread, read from ``/proc`` without stopping it: parked in
``poll``/``epoll`` on its input socket, or in a ``futex`` on its input queue, is *waiting for input*; running or
blocked anywhere else is *working*. The engine's own metrics (``--metrics-url``) and NVML are read beside it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil

from loopprof.probes import nvml, prometheus
from loopprof.probes.thread_state import StateCounts, ThreadState, open_thread_state

SNAPSHOT_SCHEMA = "loopprof.engine-snapshot/1"


class EngineProbe:
    """Samples engine processes at ``rate_hz``; ``snapshot()`` returns cumulative, JSON-able counters."""

    def __init__(
        self,
        pids: Sequence[int] = (),
        *,
        metrics_url: str | None = None,
        rate_hz: float = 100.0,
        scrape_interval_s: float = 1.0,
        gpu: bool = True,
    ) -> None:
        self.pids = list(dict.fromkeys(pids))
        self.metrics_url = metrics_url
        self._period_s = 1.0 / rate_hz
        self._scrape_interval_s = scrape_interval_s
        self._want_gpu = gpu
        self._counts: dict[int, StateCounts] = {pid: StateCounts() for pid in self.pids}
        self._handles: dict[int, ThreadState] = {}
        self._cpu_s: dict[int, float | None] = dict.fromkeys(self.pids)
        self._procs: dict[int, psutil.Process] = {}
        self._metrics = prometheus.MetricsTotals()
        self._gpu_sum = 0.0
        self._gpu_samples = 0
        self._gpus: nvml.Gpus | None = None
        self._errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()

    def start(self) -> None:
        if self._thread is not None:
            return
        for pid in self.pids:
            self._open(pid)
        if self._want_gpu:
            self._gpus = nvml.open_gpus()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="loopprof-engine-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if self._gpus is not None:
            self._gpus.close()
            self._gpus = None

    def _open(self, pid: int) -> None:
        try:
            handle = open_thread_state(pid, pid)
        except PermissionError:
            self._note(f"no permission to read engine process {pid}'s thread state (needs CAP_SYS_PTRACE)")
            handle = None
        if handle is not None:
            self._handles[pid] = handle
        try:
            self._procs[pid] = psutil.Process(pid)
        except psutil.Error:
            self._note(f"engine process {pid} is gone")

    def _note(self, message: str) -> None:
        if message not in self._errors:
            self._errors.append(message)

    def _run(self) -> None:
        next_scrape = time.monotonic()
        while not self._stop.is_set():
            for pid, handle in list(self._handles.items()):
                state, syscall = handle.read()
                if state == "gone":
                    handle.close()
                    del self._handles[pid]
                    self._note(f"engine process {pid} exited during the window")
                    continue
                self._counts[pid].add(state, syscall)
            now = time.monotonic()
            if now >= next_scrape:
                next_scrape = now + self._scrape_interval_s
                self._slow_signals()
            self._stop.wait(self._period_s)

    def _read_cpu(self) -> None:
        """Read at snapshot time so the CPU seconds and the snapshot's timestamp describe the same instant."""
        for pid, proc in list(self._procs.items()):
            try:
                t = proc.cpu_times()
                self._cpu_s[pid] = t.user + t.system
            except psutil.Error:
                self._procs.pop(pid, None)

    def _slow_signals(self) -> None:
        if self.metrics_url:
            try:
                prometheus.add_scrape(self._metrics, prometheus.scrape(self.metrics_url))
            except prometheus.ScrapeError as exc:
                self._metrics.failures += 1
                self._metrics.last_error = str(exc)
        if self._gpus is not None:
            util = self._gpus.utilization()
            if util is not None:
                self._gpu_sum += util
                self._gpu_samples += 1

    def snapshot(self) -> dict[str, Any]:
        self._read_cpu()
        return {
            "schema": SNAPSHOT_SCHEMA,
            "t_mono_s": time.monotonic(),
            "pids": self.pids,
            "threads": {str(pid): dict(c.__dict__) for pid, c in self._counts.items()},
            "cpu_s": {str(pid): v for pid, v in self._cpu_s.items()},
            "metrics": self._metrics.as_dict() if self.metrics_url else None,
            "gpu": {"sum": self._gpu_sum, "samples": self._gpu_samples, "count": self._gpus.count}
            if self._gpus is not None
            else None,
            "errors": list(self._errors),
        }
