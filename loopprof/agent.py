"""The in-process agent: owns the probes, one daemon thread, and turns their state into snapshots and reports.

Lifecycle::

    agent = Agent(AgentConfig.from_env())
    agent.start()          # GC hook, tokenizer patches, agent thread, loop-start hooks; never raises
    agent.attach_loop()    # from inside the loop (``loopprof.start()`` does this when a loop is running)
    agent.snapshot()       # cheap JSON-able cumulative counters (streamed by ``loopprof run``)
    agent.report()         # loopprof.report/1, source "embedded"
    agent.stop()           # removes every hook, patch and thread it added

Attaching when the loop starts later: ``start()`` wraps ``asyncio.BaseEventLoop.run_forever`` and, now or when
uvloop is imported later (post-import hook), ``uvloop.Loop.run_forever``. ``asyncio.run``, ``loop.run_forever``,
``run_until_complete``, ``uvloop.run``, ``uvloop.install()`` + ``asyncio.run`` and uvicorn's loop factories all
go through them, so code that starts before any loop exists (the ``run`` wrapper's bootstrap) gets the agent
attached to the first loop that runs. A loop that starts while the attached one is still running (a helper
thread's loop) is left alone.

Threads: one daemon thread ``loopprof-agent`` wakes every ``min(watchdog_interval_ms, gil_knock_interval_ms)``;
its sleep is the GIL knock, then it samples the loop thread's syscall (uvloop busy share) and runs the
slow-callback watchdog. Nothing but the lag tick (a timestamp and a histogram increment) runs on the loop.

Engine: the agent runs ``loopprof.probes.engine.EngineProbe`` on ``LOOPPROF_ENGINE_PIDS``, or else on this
process's Python children, looked for every few seconds until found (vLLM starts EngineCore during start-up),
plus ``LOOPPROF_METRICS_URL`` when set, and fills ``engine`` with ``loopprof.analysis.engine.engine_window``;
with none of them (or if that fails) the report's engine fields stay null. ``loopprof run`` switches the
children search off: its wrapper watches the engines once for the whole tree.

Export: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, the agent hands the exporter a report every
``export_interval_s`` from its own thread.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from loopprof import _import_hook
from loopprof._histogram import Histogram
from loopprof.config import AgentConfig
from loopprof.probes import tokenization
from loopprof.probes.gc_pause import GcPauseProbe
from loopprof.probes.gil import GilKnocker, threads_cpu_snapshot
from loopprof.probes.loop_busy import SelectorBusy, SyscallBusy
from loopprof.probes.loop_lag import LagProbe
from loopprof.probes.slow_callbacks import SlowCallbackWatchdog
from loopprof.report import Engine, ProcessInfo, Report, Target

log = logging.getLogger("loopprof")
SNAPSHOT_SCHEMA = "loopprof.snapshot/1"
EXPORT_SHUTDOWN_S = 2.0  # at most this long at application exit for the last OTLP batch
ENGINE_LOOK_INTERVAL_S = 5.0  # how often, until one is found, the agent looks for engine child processes


def loop_kind(loop: Any) -> str:
    module = type(loop).__module__ or ""
    if module.startswith("uvloop"):
        return "uvloop"
    if isinstance(loop, asyncio.BaseEventLoop):
        return "asyncio"
    return module.split(".")[0] or "unknown"


class _Attached:
    """The probes bound to one running loop."""

    def __init__(self, agent: Agent, loop: asyncio.AbstractEventLoop, seq: int) -> None:
        cfg = agent.config
        self.loop = loop
        self.seq = seq
        self.kind = loop_kind(loop)
        self.ident = threading.get_ident()
        self.native_id = threading.get_native_id()
        self.lag = LagProbe(loop, cfg.lag_interval_ms, hist=agent._lag_hist)
        self.watchdog = SlowCallbackWatchdog(self.lag, self.ident, cfg.slow_callback_ms, places=agent._slow_places)
        self.selector = SelectorBusy.for_loop(loop) if self.kind == "asyncio" else None
        self.sampler = None if self.selector is not None else SyscallBusy(self.native_id)
        if self.selector is not None:
            self.selector.start()
        self.lag.start()

    def alive(self) -> bool:
        return not self.loop.is_closed() and self.loop.is_running()

    def stop(self) -> None:
        self.lag.stop()
        if self.selector is not None:
            self.selector.stop()
        if self.sampler is not None:
            self.sampler.stop()

    def busy_snapshot(self) -> dict[str, Any] | None:
        probe = self.selector or self.sampler
        if probe is None:
            return None
        snap = probe.snapshot()
        snap["attach_seq"] = self.seq
        return snap


class Agent:
    def __init__(self, config: AgentConfig | None = None) -> None:
        self.config = config or AgentConfig.from_env()
        self.requests: Any = None  # set by the ASGI middleware: an object with snapshot() -> dict
        self._lock = threading.Lock()  # start/stop/attach only; never taken by the loop's hot path
        self._started = False
        self._warned = False
        self._attached: _Attached | None = None
        self._attach_seq = 0
        self._lag_hist = Histogram()
        self._slow_places: dict[str, list[float]] = {}
        self._gc: GcPauseProbe | None = None
        self._gil: GilKnocker | None = None
        self._engine: Any = None
        self._engine_first: dict[str, Any] | None = None
        self._next_engine_look = 0.0
        self._exporter: Any = None
        self._next_export = 0.0
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._patches: list[tuple[type, str, Any, bool]] = []  # (class, name, original, class had its own)
        self._unhooks: list[Any] = []
        self._first: dict[str, Any] | None = None
        self._atexit = False
        self._loop_stop_callbacks: list[Callable[[], None]] = []

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Install the probes. Idempotent; a failure is logged once and the application goes on."""
        try:
            with self._lock:
                if self._started:
                    return
                self._started = True
                self._stop_event.clear()
                cfg = self.config
                if cfg.gc:
                    self._gc = GcPauseProbe()
                    self._gc.start()
                if cfg.tokenization:
                    tokenization.start()
                if cfg.gil:
                    self._gil = GilKnocker()
                self._engine = _make_engine_probe(cfg, cfg.engine_pids)
                self._engine_first = self._engine.snapshot() if self._engine is not None else None
                self._install_loop_hooks()
                self._exporter = _make_exporter(cfg)
                self._next_export = time.monotonic() + cfg.export_interval_s
                self._thread = threading.Thread(target=self._run, name="loopprof-agent", daemon=True)
                self._thread.start()
                if cfg.json_path:
                    atexit.register(self._write_json)
                    self._atexit = True
            self._first = self.snapshot()
        except Exception as exc:
            self._warn(f"loopprof agent could not start fully: {exc!r}")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.attach_loop(loop)

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Bind the loop probes to ``loop`` (the running loop when None). Never raises."""
        try:
            if loop is None:
                loop = asyncio.get_running_loop()
            if not self._started:
                self.start()
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop.is_running() and running is not loop:
                loop.call_soon_threadsafe(self._attach_here, loop)  # probes must learn the loop's thread
            else:
                self._attach_here(loop)
        except Exception as exc:
            self._warn(f"loopprof could not attach to the event loop: {exc!r}")

    def _attach_here(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            with self._lock:
                if not self._started or (self._attached is not None and self._attached.loop is loop):
                    return
                if self._attached is not None:
                    self._attached.stop()
                self._attach_seq += 1
                self._attached = _Attached(self, loop, self._attach_seq)
                tokenization.set_loop_thread(self._attached.ident)
        except Exception as exc:
            self._warn(f"loopprof could not attach to the event loop: {exc!r}")

    def on_loop_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a loop's ``run_forever`` returns.

        Servers such as uvicorn re-raise SIGTERM after a graceful shutdown, so ``atexit`` never runs; the end of
        the loop is the last moment a consumer (the ``run`` wrapper) can take a final snapshot.
        """
        self._loop_stop_callbacks.append(callback)

    def _loop_stopped(self) -> None:
        for callback in list(self._loop_stop_callbacks):
            _quiet(callback)

    def _maybe_attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """From the run_forever hook: follow a new loop unless the current one is still running."""
        current = self._attached
        if current is None or (current.loop is not loop and not current.alive()):
            self._attach_here(loop)

    def stop(self) -> None:
        """Remove every hook, patch and thread; write LOOPPROF_JSON. Idempotent, never raises."""
        try:
            if self._started and self.config.json_path:
                self._write_json()
        except Exception as exc:
            self._warn(f"loopprof could not write its report: {exc!r}")
        exporter, self._exporter = self._exporter, None
        if exporter is not None and self._started:
            _quiet(lambda: exporter.update(self.report()))
            _quiet(lambda: exporter.shutdown(EXPORT_SHUTDOWN_S))
        try:
            with self._lock:
                if not self._started:
                    return
                self._started = False
                self._stop_event.set()
                thread, self._thread = self._thread, None
                if self._attached is not None:
                    self._attached.stop()
                    self._attached = None
                tokenization.set_loop_thread(None)
                if self._gc is not None:
                    self._gc.stop()
                if self.config.tokenization:
                    tokenization.stop()
                self._remove_loop_hooks()
                if self._engine is not None:
                    _quiet(self._engine.stop)
                if self._atexit:
                    atexit.unregister(self._write_json)
                    self._atexit = False
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        except Exception as exc:
            self._warn(f"loopprof agent did not stop cleanly: {exc!r}")

    @property
    def started(self) -> bool:
        return self._started

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        a = self._attached
        return None if a is None else a.loop

    # ----------------------------------------------------------------- agent thread
    def _run(self) -> None:
        cfg = self.config
        period = max(0.001, min(cfg.watchdog_interval_ms, cfg.gil_knock_interval_ms) / 1000.0)
        # time.sleep, not Event.wait: measured 48 µs of CPU per 5 ms wake-up here against 96 µs for Event.wait
        # (a Condition round trip); stop() waits at most one period for the flag to be seen.
        wait = time.sleep
        while not self._stop_event.is_set():
            try:
                if self._gil is not None:
                    self._gil.knock(wait, period)
                else:
                    wait(period)
                if self._stop_event.is_set():
                    break
                self._look_for_engine()
                self._export()
                if self._gc is not None:
                    self._gc.tick()
                attached = self._attached
                # A stopped loop (between run_until_complete calls) is neither busy nor stalled.
                if attached is not None and attached.loop.is_running():
                    if attached.sampler is not None:
                        attached.sampler.sample()
                    attached.watchdog.check()
            except Exception:  # keep measuring; a probe bug must not kill the thread silently forever
                log.debug("loopprof agent thread error", exc_info=True)
                wait(period)
        if self._gil is not None:
            self._gil.close()  # the fd belongs to this thread's /proc entry

    def _export(self) -> None:
        """Hand the exporter the window so far, every ``export_interval_s``, from this thread (never the loop)."""
        if self._exporter is None:
            return
        now = time.monotonic()
        if now >= self._next_export:
            self._next_export = now + self.config.export_interval_s
            self._exporter.update(self.report())

    def _look_for_engine(self) -> None:
        """An engine started after the agent (vLLM starts EngineCore during start-up) is found within seconds."""
        cfg = self.config
        if self._engine is not None or cfg.engine_pids or not cfg.engine_children:
            return
        now = time.monotonic()
        if now < self._next_engine_look:
            return
        self._next_engine_look = now + ENGINE_LOOK_INTERVAL_S
        pids = _engine_children()
        if pids:
            probe = _make_engine_probe(cfg, pids)
            if probe is not None:
                self._engine_first = probe.snapshot()
                self._engine = probe

    # ----------------------------------------------------------------- loop-start hooks
    def _install_loop_hooks(self) -> None:
        self._patch(asyncio.BaseEventLoop, "run_forever")
        self._unhooks.append(_import_hook.when_imported("uvloop".__eq__, self._on_uvloop))

    def _on_uvloop(self, module: Any) -> None:
        cls = getattr(module, "Loop", None)
        if isinstance(cls, type):
            self._patch(cls, "run_forever")

    def _patch(self, cls: type, name: str) -> None:
        original = getattr(cls, name, None)
        if original is None or hasattr(original, "__loopprof_wrapped__"):
            return
        agent = self

        @functools.wraps(original)
        def run_forever(loop_self: Any, *args: Any, **kwargs: Any) -> Any:
            with contextlib.suppress(Exception):
                agent._maybe_attach(loop_self)
            try:
                return original(loop_self, *args, **kwargs)
            finally:
                agent._loop_stopped()

        run_forever.__loopprof_wrapped__ = original  # type: ignore[attr-defined]
        had_own = name in cls.__dict__
        raw = cls.__dict__.get(name)
        setattr(cls, name, run_forever)
        self._patches.append((cls, name, raw, had_own))

    def _remove_loop_hooks(self) -> None:
        while self._unhooks:
            self._unhooks.pop()()
        while self._patches:
            cls, name, raw, had_own = self._patches.pop()
            try:
                if had_own:
                    setattr(cls, name, raw)
                else:
                    delattr(cls, name)
            except (AttributeError, TypeError):
                pass

    def patched(self) -> list[str]:
        return [f"{c.__module__}.{c.__qualname__}.{n}" for c, n, _, _ in self._patches]

    # ----------------------------------------------------------------- output
    def snapshot(self) -> dict[str, Any]:
        """Cumulative counters since start, JSON-able and small (sparse histograms); under 1 ms."""
        attached = self._attached
        snap: dict[str, Any] = {
            "schema": SNAPSHOT_SCHEMA,
            "pid": os.getpid(),
            "python": platform.python_version(),
            "loop_kind": None if attached is None else attached.kind,
            "t_mono_s": time.monotonic(),
            "wall_time": time.time(),
            "attach_seq": None if attached is None else attached.seq,
            "lag": None,
            "busy": None,
            "slow_callbacks": None,
            "gc": None,
            "gil": None,
            "tokenization": None,
            "requests": None,
        }
        try:
            if attached is not None:
                snap["lag"] = attached.lag.snapshot()
                snap["busy"] = attached.busy_snapshot()
                snap["slow_callbacks"] = attached.watchdog.snapshot()
            if self._gc is not None:
                snap["gc"] = self._gc.snapshot()
            if self._gil is not None:
                snap["gil"] = {"knock": self._gil.snapshot(), "threads_cpu": threads_cpu_snapshot()}
            if self.config.tokenization and self._started:
                snap["tokenization"] = tokenization.snapshot()
            if self.requests is not None:
                snap["requests"] = self.requests.snapshot()
            if self._engine is not None:
                snap["engine"] = self._engine.snapshot()
        except Exception as exc:
            snap["error"] = repr(exc)
        return snap

    def report(self, since: dict[str, Any] | None = None) -> Report:
        """The window from ``since`` (default: the snapshot taken at start) to now, as ``loopprof.report/1``."""
        from loopprof.analysis.frontend import frontend_window
        from loopprof.analysis.verdict import decide

        last = self.snapshot()
        first = since or self._first or last
        frontend = frontend_window(first, last)
        engine = (
            _engine_window(first.get("engine") or self._engine_first, last.get("engine"))
            if "engine" in last
            else Engine()
        )
        started = datetime.fromtimestamp(float(first["wall_time"]), tz=timezone.utc)
        report = Report(
            source="embedded",
            started_at=started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            duration_s=round(float(last["t_mono_s"]) - float(first["t_mono_s"]), 3),
            target=Target(
                pid=os.getpid(),
                python=platform.python_version(),
                processes=[ProcessInfo(os.getpid(), "frontend", " ".join(sys.argv))],
            ),
            frontend=frontend,
            engine=engine,
        )
        report.sampler.overhead_cpu_fraction = _agent_cpu_fraction(first, last)
        report.verdict = decide(frontend, engine)
        return report

    def _write_json(self) -> None:
        path = self.config.json_path
        if path:
            try:
                self.report().write(path)
            except Exception as exc:
                self._warn(f"loopprof could not write {path}: {exc!r}")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s (profiling continues with what works)", message)
        else:
            log.debug(message)


def _agent_cpu_fraction(first: dict[str, Any], last: dict[str, Any]) -> float | None:
    """CPU share of the ``loopprof-agent`` thread over the window: the agent's own cost, reported honestly."""

    def cpu(snap: dict[str, Any]) -> float | None:
        threads = (snap.get("gil") or {}).get("threads_cpu") or {}
        found = [float(v[1]) for v in threads.values() if v[0] == "loopprof-agent"]
        return found[0] if found else None

    a, b = cpu(first), cpu(last)
    wall = float(last["t_mono_s"]) - float(first["t_mono_s"])
    if b is None or wall <= 0:
        return None
    return round(max(0.0, b - (a or 0.0)) / wall, 5)


def _quiet(fn: Any) -> None:
    try:
        fn()
    except Exception:
        log.debug("loopprof: ignored error", exc_info=True)


def _make_exporter(config: AgentConfig) -> Any:
    """The OTLP exporter when the standard ``OTEL_EXPORTER_OTLP_*`` variables ask for one; a failure is logged once."""
    if not config.otlp:
        return None
    try:
        from loopprof.export import exporter_from_options

        return exporter_from_options(None)
    except Exception as exc:
        log.warning("loopprof: OTLP export disabled: %s", exc)
        return None


def _engine_children() -> list[int]:
    """This process's Python children that are not frontends themselves (the engine, its workers)."""
    try:
        from loopprof import discovery

        children = discovery.discover(os.getpid())[1:]
        for info in children:
            discovery.refine_role(info, "working")  # a child with no loop of its own serves this frontend
        return [p.pid for p in children if p.role == "engine"]
    except Exception:
        log.debug("loopprof: engine discovery failed", exc_info=True)
        return []


def _make_engine_probe(config: AgentConfig, pids: tuple[int, ...] | list[int]) -> Any:
    """The engine probe for ``pids`` and/or the metrics URL; None when there is neither."""
    if not pids and not config.metrics_url:
        return None
    try:
        from loopprof.probes.engine import EngineProbe

        probe = EngineProbe(list(pids), metrics_url=config.metrics_url)
        probe.start()
        return probe
    except Exception:
        log.debug("loopprof: engine probe unavailable", exc_info=True)
        return None


def _engine_window(first: Any, last: Any) -> Engine:
    try:
        from loopprof.analysis.engine import engine_window
    except Exception:
        return Engine()
    try:
        result = engine_window(first, last)
        return result if isinstance(result, Engine) else Engine()
    except Exception:
        log.debug("loopprof: engine analysis failed", exc_info=True)
        return Engine()
