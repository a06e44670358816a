"""The pure report → metric points mapping, against hand-computed expectations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loopprof.report import BOTTLENECKS, Frontend, ProcessInfo, Report, Target
from loopprof_exporter_otlp.metrics import METRICS, available_cpus, report_points

DOCS = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


def _by(points, name, **attrs):
    return [p for p in points if p.name == name and all(p.attributes.get(k) == v for k, v in attrs.items())]


def _one(points, name, **attrs) -> float:
    found = _by(points, name, **attrs)
    assert len(found) == 1, (name, attrs, found)
    return found[0].value


def test_every_point_has_pid_and_role_and_a_catalogued_name(golden_report):
    names = {spec.name for spec in METRICS}
    points = report_points(golden_report)
    assert points
    for p in points:
        assert p.name in names
        assert isinstance(p.attributes["process.pid"], int)
        assert p.attributes["loopprof.role"] in ("frontend", "engine", "other")


def test_values_and_units_follow_the_report(golden_report):
    r = golden_report
    pts = report_points(r)
    fe = {"process.pid": 4242, "loopprof.role": "frontend"}  # frontend.pid is null: the target pid stands in
    assert _one(pts, "loopprof.loop.lag", **fe, **{"loopprof.percentile": "p99"}) == pytest.approx(0.095)
    assert _one(pts, "loopprof.loop.lag", **fe, **{"loopprof.percentile": "max"}) == pytest.approx(0.160)
    assert _one(pts, "loopprof.loop.utilization", **fe) == 0.97
    assert _one(pts, "loopprof.gil.utilization", **fe) == 0.99
    assert _one(pts, "loopprof.gil.contention", **fe) == 0.12
    assert [_one(pts, "cpython.gc.collections", **{"cpython.gc.generation": g}) for g in (0, 1, 2)] == [180, 25, 5]
    assert _one(pts, "loopprof.gc.pause.time") == pytest.approx(0.310)
    assert _one(pts, "loopprof.gc.pause.duration", **{"loopprof.percentile": "max"}) == pytest.approx(0.0098)
    assert _one(pts, "loopprof.gc.utilization") == 0.0103
    op = "loopprof.tokenization.operation"
    on = "loopprof.tokenization.on_loop"
    assert _one(pts, "loopprof.tokenization.time", **{op: "detokenize", on: True}) == pytest.approx(2.9)
    assert _one(pts, "loopprof.tokenization.time", **{op: "detokenize", on: False}) == pytest.approx(0.0)
    assert _one(pts, "loopprof.tokenization.time", **{op: "encode", on: False}) == pytest.approx(1.2)
    assert _one(pts, "loopprof.tokenization.calls", **{op: "encode"}) == 1800
    assert _one(pts, "loopprof.tokenization.utilization") == 0.137
    eng = {"loopprof.role": "engine", "process.pid": min(r.engine.pids)}
    assert _one(pts, "loopprof.engine.utilization", **eng) == 0.31
    assert _one(pts, "loopprof.engine.requests.waiting", **eng) == 0.0  # measured 0 stays 0
    assert _one(pts, "loopprof.engine.requests.running", **eng) == 64.0
    assert not _by(pts, "loopprof.engine.gpu.utilization")  # null in the report: no point, never a made-up 0
    cpu = _one(pts, "process.cpu.utilization", **{"process.pid": 4250, "loopprof.role": "engine"})
    assert cpu == pytest.approx(0.41 / available_cpus(4250))
    verdict = {b: _one(pts, "loopprof.verdict", **{"loopprof.bottleneck": b}) for b in BOTTLENECKS}
    assert verdict == {b: (1.0 if b == r.verdict.bottleneck else 0.0) for b in BOTTLENECKS}
    assert r.verdict.bottleneck == "frontend"


def test_unmeasured_report_exports_only_the_verdict():
    r = Report(source="attach", started_at="2026-01-01T00:00:00Z", duration_s=1.0, target=Target(pid=7))
    names = {p.name for p in report_points(r)}
    assert names == {"loopprof.verdict", "loopprof.verdict.confidence"}


def test_several_frontends_are_separate_series_with_their_roles():
    fe1, fe2 = Frontend(pid=11), Frontend(pid=12)
    fe1.loop.busy_fraction, fe2.loop.busy_fraction = 0.2, 0.9
    fe2.gc.collections = 4  # out-of-process count: no generation attribute
    fe2.tokenization.total_ms, fe2.tokenization.on_loop_fraction, fe2.tokenization.calls = 100.0, 0.25, 3
    r = Report(
        source="run",
        started_at="2026-01-01T00:00:00Z",
        duration_s=1.0,
        target=Target(pid=10, processes=[ProcessInfo(11, "frontend", "a"), ProcessInfo(12, "other", "b")]),
        frontends=[fe1, fe2],
    )
    pts = report_points(r)
    assert _one(pts, "loopprof.loop.utilization", **{"process.pid": 11, "loopprof.role": "frontend"}) == 0.2
    assert _one(pts, "loopprof.loop.utilization", **{"process.pid": 12, "loopprof.role": "other"}) == 0.9
    gc = _by(pts, "cpython.gc.collections")
    assert [(p.value, "cpython.gc.generation" in p.attributes) for p in gc] == [(4.0, False)]
    on = _one(pts, "loopprof.tokenization.time", **{"loopprof.tokenization.on_loop": True})
    off = _one(pts, "loopprof.tokenization.time", **{"loopprof.tokenization.on_loop": False})
    assert (on, off) == (pytest.approx(0.025), pytest.approx(0.075))
    assert _by(pts, "loopprof.tokenization.calls")[0].attributes["loopprof.tokenization.operation"] == "_OTHER"


def test_docs_list_every_metric_with_its_unit_and_type():
    text = DOCS.read_text(encoding="utf-8")
    rows = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(r"^\| `([\w.]+)` \| `([^`]+)` \| (\w+) \|", text, re.M)
    }
    for spec in METRICS:
        assert rows.get(spec.name) == (spec.unit, spec.kind), spec.name
        for attr in spec.attributes:
            assert f"`{attr}`" in text
    assert set(rows) == {spec.name for spec in METRICS}


def prometheus_name(spec) -> str:
    """Prometheus's default OTLP translation (UnderscoreEscapingWithSuffixes), as docs/metrics.md describes it."""
    name = spec.name.replace(".", "_")
    if spec.unit == "s":
        name += "_seconds"
    elif spec.unit == "1" and spec.kind == "gauge":
        name += "_ratio"
    return name + ("_total" if spec.kind == "counter" else "")


def test_docs_and_dashboard_use_the_translated_names():
    import json

    text = DOCS.read_text(encoding="utf-8")
    documented = dict(re.findall(r"^\| `([\w.]+)` \|.*\| `(\w+)` \|$", text, re.M))
    assert documented == {spec.name: prometheus_name(spec) for spec in METRICS}
    dashboard = json.loads((DOCS.parents[1] / "examples" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set(re.findall(r"\b((?:loopprof|cpython|process)_[a-z_]+?)(?=\{|\)|\[|\s|$)", " ".join(exprs)))
    labels = {a.replace(".", "_") for spec in METRICS for a in (*spec.attributes, "process.pid", "loopprof.role")}
    used -= labels
    assert used == set(documented.values())  # every metric has a panel, and no panel queries a name we don't send
