"""The report model is the contract: round-trips, nulls stay null, bad files fail in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from loopprof.report import (
    SCHEMA,
    Frontend,
    Loop,
    Percentiles,
    Report,
    ReportError,
    SlowCallback,
    load_report,
)

CONTRACT_KEYS = {
    "": {"schema", "source", "started_at", "duration_s", "target", "frontend", "engine", "verdict"},
    "target": {"pid", "python", "processes"},
    "frontend": {"loop", "gil", "gc", "tokenization"},
    "frontend.loop": {"busy_fraction", "lag_ms", "slow_callbacks"},
    "frontend.loop.lag_ms": {"p50", "p90", "p99", "max"},
    "frontend.gil": {"held_fraction", "contention", "holders"},
    "frontend.gc": {"collections", "pause_ms", "time_fraction"},
    "frontend.gc.pause_ms": {"total", "p99", "max"},
    "frontend.tokenization": {"calls", "total_ms", "time_fraction", "on_loop_fraction"},
    "engine": {"busy_fraction", "gpu_utilization", "waiting_requests", "signals"},
    "verdict": {"bottleneck", "confidence", "reasons", "advice"},
}


def _at(data: dict, dotted: str) -> dict:
    for part in filter(None, dotted.split(".")):
        data = data[part]
    return data


def test_every_contract_field_is_present_and_unmeasured_values_are_null() -> None:
    data = Report(source="attach", started_at="2026-01-01T00:00:00Z", duration_s=1.0).to_dict()
    assert data["schema"] == SCHEMA
    assert next(iter(data)) == "schema"
    for path, keys in CONTRACT_KEYS.items():
        assert keys <= set(_at(data, path)), path
    assert data["frontend"]["loop"]["busy_fraction"] is None
    assert data["frontend"]["gc"]["collections"] is None
    assert data["engine"]["gpu_utilization"] is None


def test_round_trip_keeps_values(tmp_path: Path) -> None:
    report = Report(
        source="embedded",
        started_at="2026-01-01T00:00:00Z",
        duration_s=2.5,
        frontend=Frontend(
            loop=Loop(
                busy_fraction=0.5,
                lag_ms=Percentiles(1.0, 2.0, 3.0, 50.0),
                slow_callbacks=[SlowCallback("app:block:12", 2, 50.1)],
            )
        ),
    )
    path = tmp_path / "r.json"
    report.write(path)
    again = load_report(path)
    assert again == report


def test_nan_is_written_as_null() -> None:
    report = Report(source="attach", started_at="x", duration_s=1.0)
    report.frontend.loop.busy_fraction = math.nan
    assert json.loads(report.to_json())["frontend"]["loop"]["busy_fraction"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such report file"),
        ("{not json", "is not JSON"),
        ('{"schema": "other/9"}', "unsupported report schema"),
        ("[1, 2]", "not a loopprof report"),
        (json.dumps({"schema": SCHEMA, "source": "attach", "started_at": "x", "duration_s": "long"}), "malformed"),
        (json.dumps({"schema": SCHEMA, "source": "nowhere", "started_at": "x", "duration_s": 1}), "source"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ReportError) as info:
        load_report(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
