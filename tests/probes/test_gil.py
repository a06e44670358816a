"""GIL contention: a thread burning Python ~80% of the time must read clearly higher than none."""

from __future__ import annotations

import threading
import time

from loopprof.agent import Agent
from loopprof.analysis.frontend import gil_window
from loopprof.config import AgentConfig
from tests.conftest import spin


def _measure(window_s: float, burn: bool) -> tuple[float | None, float | None, float | None]:
    agent = Agent(AgentConfig(tokenization=False, gc=False))
    stop = threading.Event()
    go = threading.Event()
    burned: list[float] = []

    def burner() -> None:
        go.wait()
        t0 = time.thread_time()
        while not stop.is_set():
            spin(0.008)
            time.sleep(0.002)
        burned.append(time.thread_time() - t0)

    thread = threading.Thread(target=burner, name="burner")
    agent.start()
    try:
        if burn:
            thread.start()
        time.sleep(0.1)
        first = agent.snapshot()
        go.set()
        time.sleep(window_s)
        stop.set()
        last = agent.snapshot()
    finally:
        go.set()
        stop.set()
        if burn:
            thread.join()
        agent.stop()
    gil = gil_window(first, last, last["t_mono_s"] - first["t_mono_s"])
    assert gil.contention_method == "knock_overshoot"
    assert gil.held_method == "python_threads_cpu" and "upper bound" in (gil.note or "")
    burner_share = None
    if burn:
        # Ground truth: the burner's own CPU time (pure Python: it holds the GIL whenever it is on CPU).
        burner_share = burned[0] / (last["t_mono_s"] - first["t_mono_s"])
        (held_by_burner,) = [h.fraction for h in gil.holders if h.thread == "burner"]
        assert abs(held_by_burner - burner_share) <= 0.05, (held_by_burner, burner_share)
    return gil.contention, gil.held_fraction, burner_share


def test_contention_and_held_share_rise_with_a_python_burner() -> None:
    idle_contention, idle_held, _ = _measure(1.0, burn=False)
    busy_contention, busy_held, burner_share = _measure(1.0, burn=True)
    assert idle_contention is not None and busy_contention is not None
    assert idle_held is not None and busy_held is not None and burner_share is not None
    assert idle_contention < 0.05
    # A burner holding the GIL 80% of the time makes every knock wait up to the 5 ms switch interval.
    assert busy_contention > idle_contention + 0.15, (idle_contention, busy_contention)
    # On a loaded machine the burner gets less CPU than it asks for: compare with what it actually got.
    assert busy_held >= burner_share - 0.05, (busy_held, burner_share)
