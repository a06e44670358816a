"""Busy share of a real loop driven at a known duty cycle (callbacks that spin 30 ms every 100 ms)."""

from __future__ import annotations

import asyncio
import selectors

import pytest

from loopprof.agent import Agent
from loopprof.config import AgentConfig
from loopprof.probes.loop_busy import SelectorBusy, busy_fraction_window
from tests.conftest import LOOP_KINDS, run_on, spin

SPIN_S = 0.030
PERIOD_S = 0.100


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_busy_fraction_matches_planted_duty_cycle(kind: str) -> None:
    # Syscall sampling is statistical (~200 samples/s): give it a longer window than exact selector timing.
    window_s = 2.0 if kind == "asyncio" else 3.0
    agent = Agent(AgentConfig(gil=False, tokenization=False, gc=False))

    async def main():
        loop = asyncio.get_running_loop()
        agent.attach_loop()
        await asyncio.sleep(0.2)
        spent = 0.0
        first = agent.snapshot()
        t0 = loop.time()
        while loop.time() - t0 < window_s:
            spent += spin(SPIN_S)
            await asyncio.sleep(PERIOD_S - SPIN_S)
        last = agent.snapshot()
        return first, last, spent

    try:
        first, last, spent = run_on(kind, main)
    finally:
        agent.stop()
    truth = spent / (last["t_mono_s"] - first["t_mono_s"])
    busy = busy_fraction_window(first["busy"], last["busy"])
    assert busy is not None
    assert abs(busy - truth) <= 0.05, (busy, truth)
    expected = "selector_timing" if kind == "asyncio" else "syscall_sampling"
    assert last["busy"]["method"] == expected


def test_selector_wrapper_is_removed() -> None:
    sel = selectors.DefaultSelector()
    try:
        probe = SelectorBusy(sel)
        probe.start()
        assert "select" in vars(sel)
        sel.select(0.01)
        snap = probe.snapshot()
        assert snap["idle_s"] >= 0.009
        probe.stop()
        assert "select" not in vars(sel)
    finally:
        sel.close()


def test_window_needs_two_snapshots_of_the_same_method() -> None:
    last = {"method": "selector_timing", "idle_s": 1.0, "t_s": 10.0}
    assert busy_fraction_window(None, last) is None
    assert busy_fraction_window(None, {**last, "started_s": 8.0}) == 0.5  # attached inside the window
    assert busy_fraction_window({"method": "selector_timing", "idle_s": 0.5, "t_s": 9.0}, last) == 0.5
    sampled = {"method": "syscall_sampling", "busy_samples": 3, "idle_samples": 1, "busy_s": 0.3, "idle_s": 0.1}
    assert busy_fraction_window(None, sampled) == pytest.approx(0.75)
    assert busy_fraction_window(sampled, sampled) is None
