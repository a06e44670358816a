"""Planted stalls on real asyncio and uvloop loops: the lag probe and the watchdog must see them as planted."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest

from loopprof.agent import Agent
from loopprof.config import AgentConfig
from loopprof.probes.loop_lag import LagProbe
from tests.conftest import LOOP_KINDS, run_on

BLOCK_S = 0.050


def planted_block(out: list[float]) -> None:
    """Holds the loop (and the GIL) in its own frame, as a CPU-bound handler would.

    Ground truth: from the block's start until a witness callback queued at that start gets to run, i.e. how
    long the loop was unavailable, including any time a loaded machine kept the thread off the CPU after it.
    """
    t0 = time.perf_counter()
    asyncio.get_running_loop().call_soon(lambda: out.append(time.perf_counter() - t0))
    while time.perf_counter() - t0 < BLOCK_S:
        pass


def _lines_of(fn: object) -> range:
    lines, first = inspect.getsourcelines(fn)  # type: ignore[arg-type]
    return range(first, first + len(lines))


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_planted_50ms_block_is_measured_and_named(kind: str) -> None:
    agent = Agent(AgentConfig(gil=False, tokenization=False))
    truth: list[float] = []

    async def main():
        agent.start()  # inside the loop: attaches at once
        await asyncio.sleep(0.3)
        first = agent.snapshot()
        asyncio.get_running_loop().call_soon(planted_block, truth)
        await asyncio.sleep(0.3)
        return agent.report(first)

    try:
        report = run_on(kind, main)
    finally:
        agent.stop()
    loop = report.frontend.loop
    assert loop.loop_kind == kind
    truth_ms = truth[0] * 1000
    assert loop.lag_ms.max is not None
    assert abs(loop.lag_ms.max - truth_ms) <= 0.10 * truth_ms, (loop.lag_ms, truth_ms)
    assert loop.lag_ms.p50 is not None and loop.lag_ms.p50 < 5.0  # the rest of the time the loop was free
    mine = [s for s in loop.slow_callbacks if s.where.startswith(f"{__name__}:planted_block:")]
    assert mine, loop.slow_callbacks
    assert int(mine[0].where.rsplit(":", 1)[1]) in _lines_of(planted_block)
    assert sum(s.count for s in mine) == 1
    assert abs(mine[0].max_ms - truth_ms) <= 0.10 * truth_ms


def test_idle_loop_has_low_lag_and_no_slow_callbacks() -> None:
    agent = Agent(AgentConfig(gil=False, tokenization=False, gc=False))

    async def main():
        agent.attach_loop()
        await asyncio.sleep(0.1)
        first = agent.snapshot()
        await asyncio.sleep(0.4)
        return agent.report(first)

    try:
        report = run_on("asyncio", main)
    finally:
        agent.stop()
    loop = report.frontend.loop
    # ~200 ticks at 2 ms; on a loaded 2-core machine a few may be late, the median may not.
    assert loop.lag_ms.p50 is not None and loop.lag_ms.p50 < 2.0
    assert loop.slow_callbacks == []
    assert loop.lag_method == "timer_probe"


def test_stopped_probe_stops_ticking() -> None:
    async def main():
        probe = LagProbe(asyncio.get_running_loop(), interval_ms=1.0)
        probe.start()
        await asyncio.sleep(0.05)
        probe.stop()
        await asyncio.sleep(0.01)
        n = probe.hist.count
        await asyncio.sleep(0.05)
        return n, probe.hist.count

    before, after = run_on("asyncio", main)
    assert before > 10
    assert after == before
    time.sleep(0)
