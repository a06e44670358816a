"""The in-process agent: lifecycle, loop-start hooks (asyncio and uvloop), snapshots, reports, LOOPPROF_JSON."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import loopprof
from loopprof.agent import SNAPSHOT_SCHEMA, Agent
from loopprof.config import AgentConfig
from loopprof.report import Report, load_report
from tests.conftest import spin

REPO = Path(__file__).resolve().parents[1]


async def _attached_kind(agent: Agent) -> tuple[bool, str | None]:
    await asyncio.sleep(0.02)
    return agent.loop is asyncio.get_running_loop(), agent.snapshot()["loop_kind"]


def test_started_before_any_loop_attaches_to_each_loop_that_runs() -> None:
    uvloop = pytest.importorskip("uvloop")
    agent = Agent(AgentConfig(gil=False, tokenization=False))
    agent.start()
    try:
        assert asyncio.run(_attached_kind(agent)) == (True, "asyncio")
        assert uvloop.run(_attached_kind(agent)) == (True, "uvloop")
        loop = uvloop.new_event_loop()
        try:
            assert loop.run_until_complete(_attached_kind(agent)) == (True, "uvloop")
        finally:
            loop.close()
    finally:
        agent.stop()
    assert agent.loop is None


def test_a_second_loop_in_another_thread_does_not_steal_the_agent() -> None:
    agent = Agent(AgentConfig(gil=False, tokenization=False, gc=False))
    seen: list[bool] = []

    async def main():
        agent.start()
        other = threading.Thread(target=lambda: seen.append(asyncio.run(_attached_kind(agent))[0]))
        other.start()
        await asyncio.get_running_loop().run_in_executor(None, other.join)
        return agent.loop is asyncio.get_running_loop()

    try:
        assert asyncio.run(main()) is True
    finally:
        agent.stop()
    assert seen == [False]


def test_attach_from_another_thread_binds_to_the_loop_thread() -> None:
    agent = Agent(AgentConfig(gil=False, tokenization=False, gc=False, slow_callback_ms=20.0))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loop-thread")
    thread.start()
    try:
        agent.start()
        agent.attach_loop(loop)
        time.sleep(0.1)
        first = agent.snapshot()
        loop.call_soon_threadsafe(spin, 0.06)
        time.sleep(0.2)
        report = agent.report(first)
    finally:
        agent.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    assert agent.loop is None
    slow = report.frontend.loop.slow_callbacks
    assert slow and slow[0].where.startswith("tests.conftest:spin:"), slow


def test_start_and_stop_are_idempotent_and_never_raise() -> None:
    agent = Agent(AgentConfig())
    agent.stop()  # before start: nothing to do
    agent.start()
    agent.start()
    assert [t.name for t in threading.enumerate()].count("loopprof-agent") == 1
    closed = asyncio.new_event_loop()
    closed.close()
    agent.attach_loop(closed)  # a closed loop is refused quietly
    agent.stop()
    agent.stop()
    assert not agent.started


def test_snapshot_is_small_json_and_cheap() -> None:
    agent = Agent(AgentConfig())

    async def main():
        agent.start()
        await asyncio.sleep(0.3)
        costs = []
        for _ in range(30):
            t0 = time.perf_counter()
            snap = agent.snapshot()
            costs.append(time.perf_counter() - t0)
        return snap, costs

    try:
        snap, costs = asyncio.run(main())
    finally:
        agent.stop()
    text = json.dumps(snap, allow_nan=False)
    assert snap["schema"] == SNAPSHOT_SCHEMA and snap["pid"] == os.getpid()
    assert snap["loop_kind"] == "asyncio"
    assert len(text) < 20_000
    # < 1 ms on an idle machine (~0.1 ms measured); a loaded 2-core CI box gets headroom.
    assert statistics.median(costs) < 0.003


def test_report_is_a_valid_embedded_report_with_a_verdict() -> None:
    agent = Agent(AgentConfig())

    async def main():
        agent.start()
        await asyncio.sleep(0.3)
        return agent.report()

    try:
        report = asyncio.run(main())
    finally:
        agent.stop()
    again = Report.from_dict(json.loads(report.to_json()))
    assert again.source == "embedded"
    assert again.frontend.loop.busy_fraction is not None and again.frontend.loop.busy_fraction < 0.5
    assert again.frontend.loop.busy_method == "selector_timing"
    assert again.frontend.gc.method == "gc_callbacks"
    assert again.engine.busy_fraction is None  # no engine named: not measured, not 0
    assert again.verdict.bottleneck in ("inconclusive", "neither")
    assert again.duration_s > 0.25


def test_loopprof_json_is_written_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    agent = Agent(AgentConfig(json_path=str(path)))
    agent.start()
    agent.stop()
    assert load_report(path).source == "embedded"


@pytest.mark.slow
def test_facade_is_light_and_loopprof_json_is_written_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "exit.json"
    script = (
        "import sys, asyncio, loopprof\n"
        "assert 'loopprof.agent' not in sys.modules and 'psutil' not in sys.modules, sorted(sys.modules)\n"
        "loopprof.start()\n"
        "async def main():\n"
        "    await asyncio.sleep(0.2)\n"
        "asyncio.run(main())\n"  # no stop(): the atexit hook writes the report
    )
    env = {**os.environ, "LOOPPROF_JSON": str(path)}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    report = load_report(path)
    assert report.frontend.loop.loop_kind == "asyncio"
    assert report.frontend.loop.lag_ms.p50 is not None


def test_facade_start_inside_a_running_loop_attaches() -> None:
    async def main():
        agent = loopprof.start()
        return agent.loop is asyncio.get_running_loop()

    assert asyncio.run(main()) is True
    loopprof.stop()
    assert loopprof.LoopProfMiddleware.__name__ == "LoopProfMiddleware"


def test_embedded_agent_finds_an_engine_child_started_after_it(tmp_path) -> None:
    """The issue's engine signal for embedded use: the server's child processes, found without configuration."""
    import subprocess
    import sys
    import time

    from loopprof.agent import Agent
    from loopprof.config import AgentConfig

    agent = Agent(AgentConfig())
    agent.start()
    # A child that waits for input in a poll, like an engine with no work.
    child = subprocess.Popen([sys.executable, "-c", "import select, time; select.select([], [], [], 20)"])
    try:
        deadline = time.monotonic() + 15
        while agent._engine is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        report = agent.report()
    finally:
        agent.stop()
        child.kill()
        child.wait(timeout=10)
    assert report.engine.pids == [child.pid]
    assert "samples" in report.engine.signals
    assert report.engine.busy_fraction is not None and report.engine.busy_fraction < 0.2
