"""Scenario data is consistent with the ground-truth window it is checked against."""

from __future__ import annotations

import pytest

from examples.scenarios import SCENARIOS, get_scenario
from examples.stack.groundtruth import window
from tests.examples.test_groundtruth import _engine, _front

CONTRACT_BOTTLENECKS = {"frontend", "engine", "both", "neither", "inconclusive"}
REQUIRED = {"idle", "engine_bound", "frontend_bound", "loop_block", "gil_hog", "gc_heavy", "tokenize_heavy",
            "multi_frontend"}  # fmt: skip


def test_every_named_scenario_exists_and_validates() -> None:
    assert set(SCENARIOS) >= REQUIRED
    for sc in SCENARIOS.values():
        sc.stack.validate()
        assert sc.stack.scenario == sc.name
        assert sc.expected_bottleneck in CONTRACT_BOTTLENECKS
        assert sc.claims


def test_claims_name_metrics_the_window_produces() -> None:
    w = window(
        {"engine": _engine(0.0, 0.0), "frontends": [_front(1, 0.0, 0.0, 0.0)]},
        {"engine": _engine(1.0, 0.5, 1, 1), "frontends": [_front(1, 1.0, 0.5, 0.0, gil_hog_run_s=0.0)]},
    )
    for sc in SCENARIOS.values():
        for metric, _, _ in sc.claims:
            assert metric in w, f"{sc.name} claims on unknown metric {metric}"


def test_check_reports_each_broken_claim() -> None:
    sc = get_scenario("engine_bound")
    broken = sc.check({"engine_busy": 0.5, "loop_busy": 0.1, "engine_mean_waiting": None})
    assert len(broken) == 2
    assert "engine_busy = 0.5, expected > 0.9" in broken[0]
    with pytest.raises(ValueError, match="choose from"):
        get_scenario("nope")
