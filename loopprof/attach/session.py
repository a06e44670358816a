"""``loopprof attach PID``: one sampling session against a running server, producing a :class:`Report`.

Who measures what (each section of the report names its method):

* loop busy share and lag: ``LoopSampler`` reads each frontend loop thread's ``/proc`` syscall at 500 Hz
  (``busy_method="syscall_sampling"``, ``lag_method="busy_stretch_estimate"``, ``lag_is_estimate=true``);
* slow callbacks, tokenization by thread and on/off loop: py-spy timeline chunks (``chrometrace --threads --idle
  --nonblocking``), 2 s each;
* GIL held share and holders: a parallel ``--gil`` recording (held = GIL samples / ticks);
* engine busy share: the lead's ``EngineProbe`` (engine main-thread state, ``/metrics``, NVML);
* GC: not measured by default (needs ``--native``, which pauses the target) — said in ``notes``.

The target is never paused: every py-spy call uses ``--nonblocking`` and ``/proc`` reads do not stop threads.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psutil

from loopprof import discovery
from loopprof.analysis.fleet import combine_frontends
from loopprof.analysis.verdict import ServerContext, decide
from loopprof.attach import frames, pyspy
from loopprof.attach.errors import AttachError, check_target, no_such_process, require_pyspy
from loopprof.attach.loop_sampler import DEFAULT_RATE_HZ, LoopSampler
from loopprof.attach.window import FrontendWindow
from loopprof.integrations import vllm
from loopprof.report import Engine, ProcessInfo, Report, SamplerHealth

CHUNK_S = 2  # whole seconds (py-spy --duration); each restart loses ~0.1-0.3 s, so 2 s keeps ~87% coverage.
# The live view still moves every second: loop busy and lag come from /proc, not from these chunks.
GC_NOTE = (
    "GC pauses are not measured by `attach`: py-spy sees them only with --native, which cannot run without "
    "pausing the target (measured ~4% of its time at 100 Hz); use `loopprof run` or the embedded agent for GC"
)
LAG_NOTE = (
    "attach estimates loop lag from busy stretches of the loop thread (/proc syscall samples at {hz} Hz) as a "
    "2 ms timer probe would see them; it over-states lag when a saturated loop never reaches its selector"
)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ProcessSampler(threading.Thread):
    """Back-to-back 1 s py-spy chunks (timeline + GIL) on one frontend process, fed into its window."""

    def __init__(self, pyspy_path: str, window: FrontendWindow, workdir: str, on_chunk: Any) -> None:
        super().__init__(name=f"loopprof-pyspy-{window.pid}", daemon=True)
        self.pyspy = pyspy_path
        self.window = window
        self.workdir = workdir
        self.on_chunk = on_chunk
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.exited = False
        self.errors: list[str] = []
        self.chunks = 0
        self.behind_chunks = 0
        self.ticks = 0
        self._current: list[pyspy.Recording] = []

    def run(self) -> None:
        w = self.window
        failures = 0
        while not self.stop_event.is_set():
            recs = [
                pyspy.Recording(
                    self.pyspy, w.pid, duration_s=CHUNK_S, rate_hz=w.rate_hz, fmt="chrometrace", gil=False,
                    workdir=self.workdir,
                ),
            ]  # fmt: skip
            if not w.gil_from_proc:  # fallback when /proc cannot read the threads: py-spy's GIL filter
                recs.append(
                    pyspy.Recording(
                        self.pyspy, w.pid, duration_s=CHUNK_S, rate_hz=w.gil_rate_hz, fmt="raw", gil=True,
                        workdir=self.workdir,
                    )
                )  # fmt: skip
            self._current = recs
            if self.stop_event.is_set():
                for r in recs:
                    r.interrupt()
            results = [r.wait(CHUNK_S + 15) for r in recs]
            timeline_res = results[0]
            gil_res = results[1] if len(results) > 1 else None
            timeline = pyspy.read_timeline(recs[0])
            gil_text = recs[1].read() if len(recs) > 1 else ""
            self._current = []
            if not timeline_res.ok or not timeline:
                if self.stop_event.is_set():
                    return  # interrupted before py-spy attached: nothing lost
                if not _alive(w.pid):
                    self.exited = True
                    return
                failures += 1
                self._error(f"py-spy failed on process {w.pid}: {timeline_res.error_line()}")
                if failures >= 5:
                    return
                self.stop_event.wait(0.2)
                continue
            failures = 0
            span_ms = max(t.total_ms for t in timeline.values())
            with self.lock:
                w.add_timeline(timeline)
                if gil_res is not None and gil_res.ok:
                    w.add_gil(pyspy.parse_raw(gil_text), round(w.gil_rate_hz * span_ms / 1000.0))
                self.chunks += 1
                self.ticks += round(w.rate_hz * span_ms / 1000.0)
                self.behind_chunks += int(timeline_res.behind or (gil_res is not None and gil_res.behind))
            self.on_chunk(w)

    def _error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)

    def stop(self) -> None:
        self.stop_event.set()
        for r in list(self._current):
            r.interrupt()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class AttachSession:
    """Everything one ``attach`` window holds; ``report()`` may be called at any time (live view, exporter)."""

    pid: int
    rate_hz: int
    pyspy_path: str
    python: str | None
    processes: list[ProcessInfo]
    metrics_url: str | None = None
    loop_rate_hz: int = DEFAULT_RATE_HZ
    workdir: str = field(default_factory=lambda: _workdir())
    started_at: str = field(default_factory=_utc_now)

    def __post_init__(self) -> None:
        self.t0 = time.monotonic()
        self.os_t0 = os.times()
        self.loops = LoopSampler(self.loop_rate_hz)
        self.samplers: dict[int, ProcessSampler] = {}
        self.cpu = discovery.CpuMeter(p.pid for p in self.processes)
        self.notes: list[str] = [GC_NOTE, LAG_NOTE.format(hz=self.loop_rate_hz)]
        self.engine_probe: Any = None
        self.engine_first: dict[str, Any] | None = None
        self.target_exited = False

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        gil_rate = max(1, self.rate_hz // 4)  # held share needs fewer samples; saves ~2% of a core
        for info in self.frontends():
            window = FrontendWindow(info.pid, self.rate_hz, gil_rate)
            self._seed_loop_thread(window)
            sampler = ProcessSampler(self.pyspy_path, window, self.workdir, self._on_chunk)
            self.samplers[info.pid] = sampler
            sampler.start()
        engines = [p.pid for p in self.processes if p.role == "engine"]
        try:
            from loopprof.probes.engine import EngineProbe
        except ImportError:  # pragma: no cover - the lead's module
            self.notes.append("engine probe not available in this build: engine not observed")
            return
        if engines or self.metrics_url:
            self.engine_probe = EngineProbe(engines, metrics_url=self.metrics_url)
            self.engine_probe.start()
            self.engine_first = self.engine_probe.snapshot()

    def _seed_loop_thread(self, window: FrontendWindow) -> None:
        """Find the loop thread with one ``py-spy dump`` so /proc sampling starts with the window."""
        threads = pyspy.dump_threads(self.pyspy_path, window.pid) or []
        loops = [t for t in threads if frames.loop_depth(t[2]) is not None]
        if loops:
            tid = next((t[0] for t in loops if t[0] == window.pid), loops[0][0])
            window.loop_tid = tid
            if self.loops.add(window.pid, tid):
                window.thread_names.update({t[0]: t[1] for t in threads})
                self._watch_threads(window)

    def _watch_threads(self, window: FrontendWindow) -> None:
        self.loops.set_threads(window.pid, window.thread_names)
        window.gil_from_proc = self.loops.gil_available(window.pid)

    def _on_chunk(self, window: FrontendWindow) -> None:
        if window.loop_tid is not None and window.pid not in self.loops.stats:
            self.loops.add(window.pid, window.loop_tid)
        self._watch_threads(window)  # threads started since (executor workers) join the GIL estimate

    def stop(self) -> None:
        for s in self.samplers.values():
            s.stop()
        for s in self.samplers.values():
            s.join(timeout=CHUNK_S + 20)
        self.loops.stop()
        if self.engine_probe is not None:
            self._engine_last = self.engine_probe.snapshot()
            self.engine_probe.stop()

    def frontends(self) -> list[ProcessInfo]:
        return [p for p in self.processes if p.role == "frontend"]

    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0

    def root_exited(self) -> bool:
        if self.target_exited:
            return True
        sampler = self.samplers.get(self.pid)
        self.target_exited = (sampler is not None and sampler.exited) or not _alive(self.pid)
        return self.target_exited

    # -- the report ---------------------------------------------------------------------------------------------

    def report(self) -> Report:
        elapsed = self.elapsed_s()
        fronts = []
        for pid, sampler in self.samplers.items():
            with sampler.lock:
                fronts.append(sampler.window.frontend(self.loops.snapshot(pid)))
        report = Report(source="attach", started_at=self.started_at, duration_s=round(elapsed, 3))
        report.target.pid = self.pid
        report.target.python = self.python
        for p in self.processes:
            cpu = self.cpu.fraction(p.pid)
            p.cpu_fraction = cpu if cpu is not None else p.cpu_fraction
        report.target.processes = [ProcessInfo(p.pid, p.role, p.cmdline, p.cpu_fraction) for p in self.processes]
        if fronts:
            report.frontend = combine_frontends(fronts)
            report.frontends = fronts if len(fronts) > 1 else []
        report.engine = self._engine()
        report.sampler = self._health(elapsed)
        report.notes = list(self.notes)
        if len(fronts) > 1:
            report.notes.append(
                f"{len(fronts)} frontend processes: `frontend` is their mean busy/GIL/tokenization share and the "
                "worst process's lag; `frontends` has each process"
            )
        for pid, sampler in self.samplers.items():
            if sampler.exited:
                report.partial = True
                report.notes.append(f"frontend process {pid} exited during the window")
        context = ServerContext.of(self.processes, len(fronts))
        report.verdict = decide(report.frontend, report.engine, report.sampler, context)
        return report

    def _engine(self) -> Engine:
        if self.engine_probe is None or self.engine_first is None:
            return Engine()
        from loopprof.analysis.engine import engine_window

        last = getattr(self, "_engine_last", None) or self.engine_probe.snapshot()
        engine = engine_window(self.engine_first, last)
        return engine

    def _health(self, elapsed: float) -> SamplerHealth:
        health = SamplerHealth()
        samplers = list(self.samplers.values())
        health.samples = sum(s.ticks for s in samplers)
        health.expected_samples = round(self.rate_hz * elapsed * len(samplers))
        chunks = sum(s.chunks for s in samplers)
        late = [sum(s.behind_chunks for s in samplers) / chunks] if chunks else []
        if self.loops.ticks:
            late.append(self.loops.late_ticks / self.loops.ticks)
        health.late_fraction = round(max(late), 4) if late else None
        for s in samplers:
            health.errors.extend(s.errors)
        health.errors.extend(self.loops.errors)
        now = os.times()
        own = (now.user - self.os_t0.user) + (now.system - self.os_t0.system)
        kids = (now.children_user - self.os_t0.children_user) + (now.children_system - self.os_t0.children_system)
        health.overhead_cpu_fraction = round((own + kids) / elapsed, 4) if elapsed > 0 else None
        return health


def _workdir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="loopprof-attach-")


def prepare(pid: int, *, engine_pids: list[int], frontend_pids: list[int]) -> tuple[str, str | None, list[ProcessInfo]]:
    """Every check that can fail before sampling: py-spy, the target, its processes and their roles."""
    pyspy_path = require_pyspy()
    python = check_target(pid, pyspy_path)
    try:
        processes = discovery.discover(pid, engine_pids=engine_pids, frontend_pids=frontend_pids)
    except psutil.NoSuchProcess:
        raise no_such_process(pid) from None
    overridden = {*engine_pids, *frontend_pids}
    for info in processes:
        if info.role == "other" and info.pid not in overridden:
            threads = pyspy.dump_threads(pyspy_path, info.pid)
            main = next((t for t in threads or [] if t[0] == info.pid), None)
            discovery.refine_role(info, frames.main_thread_kind(main[2]) if main else None, overridden)
    return pyspy_path, python, processes


def run_attach(
    pid: int,
    *,
    duration_s: float | None,
    rate_hz: int,
    json_path: str | None,
    otlp_url: str | None,
    live: bool,
    engine_pids: list[int],
    frontend_pids: list[int],
    metrics_url: str | None,
) -> int:
    """Profile ``pid`` for ``duration_s`` (until Ctrl-C when ``None``); 0 = report produced, 1 = see stderr."""
    from loopprof.renderers.live import LiveView

    try:
        pyspy_path, python, processes = prepare(pid, engine_pids=engine_pids, frontend_pids=frontend_pids)
    except AttachError as exc:
        return _fail(str(exc))
    exporter = None
    try:
        from loopprof.export import ExporterError, exporter_from_options

        try:
            exporter = exporter_from_options(otlp_url)
        except ExporterError as exc:
            return _fail(str(exc))
    except ImportError:  # pragma: no cover - the lead's module
        pass

    if metrics_url is None:  # vLLM serves /metrics on its API port: read it without being asked
        metrics_url = next(filter(None, (vllm.metrics_url(p.cmdline) for p in processes if p.role == "frontend")), None)
    session = AttachSession(pid, rate_hz, pyspy_path, python, processes, metrics_url=metrics_url)
    view = LiveView(live=live, duration_s=duration_s)
    session.start()
    view.start()
    interrupted = False
    try:
        while duration_s is None or session.elapsed_s() < duration_s:
            time.sleep(min(1.0, max(0.05, (duration_s or 1e9) - session.elapsed_s())))
            report = session.report()
            view.update(report, session.elapsed_s())
            if exporter is not None:
                exporter.update(report)
            if session.root_exited():
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        session.stop()
        view.stop()
    report = session.report()
    exited = session.root_exited()
    if exited:
        report.partial = True
        report.notes.append(f"the target process {pid} exited after {report.duration_s:.1f} s")
    elif interrupted:
        report.notes.append("the window was ended early with Ctrl-C")
    if exporter is not None:
        exporter.update(report)
        exporter.shutdown()
    view.final(report)
    if json_path:
        try:
            report.write(json_path)
        except OSError as exc:
            return _fail(f"cannot write the report to {json_path}: {exc.strerror}")
    _cleanup(session.workdir)
    if exited:
        where = f"written to {json_path}" if json_path else "printed above"
        return _fail(
            f"process {pid} exited during the window (after {report.duration_s:.1f} s); the partial report was {where}"
        )
    return 0


def _cleanup(workdir: str) -> None:
    try:
        for name in os.listdir(workdir):
            os.unlink(os.path.join(workdir, name))
        os.rmdir(workdir)
    except OSError:
        pass


def _fail(message: str) -> int:
    print(f"loopprof: {message}", file=sys.stderr)
    return 1
