"""The load generator's statistics and its bounds when nothing answers."""

from __future__ import annotations

import time

from examples.harness import free_port
from examples.loadgen import LoadSettings, percentile, run_load


def test_percentile_is_nearest_rank_and_none_when_empty() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_refused_connections_fail_fast_and_stay_bounded() -> None:
    t0 = time.monotonic()
    result = run_load(LoadSettings(port=free_port(), concurrency=4, duration_s=0.5, max_requests=100))
    assert time.monotonic() - t0 < 3.0
    assert result.completed == 0 and result.failed > 0
    assert result.req_per_s is None and result.ttft_ms_p50 is None
    assert "ConnectionRefusedError" in result.errors[0]
