"""loopprof.export: exporter lookup, the missing-exporter hint, --otlp / OTEL_* selection, the JSON-lines exporter,
and the packaging rule that the exporter distribution can never install a bare ``exporters`` module."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from loopprof import export
from loopprof.export import (
    Exporter,
    ExporterError,
    ExporterMissing,
    JsonFileExporter,
    available_exporters,
    exporter_from_options,
    load_exporter,
)
from loopprof.report import Report, load_report

ROOT = Path(__file__).resolve().parents[1]
OTLP_DIST = ROOT / "exporters" / "loopprof-exporter-otlp"


@pytest.fixture
def report() -> Report:
    return load_report(ROOT / "tests" / "data" / "frontend_bound.json")


@pytest.fixture
def no_otlp_env(monkeypatch):
    for var in (*export.OTLP_ENDPOINT_VARIABLES, "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def otlp_not_installed(monkeypatch):
    """As on a machine without loopprof-exporter-otlp: no entry points at all."""
    monkeypatch.setattr(export, "_entry_points", lambda: [])


def test_json_exporter_writes_every_update_in_order(tmp_path, report):
    path = tmp_path / "sub" / "export.jsonl"
    exporter = load_exporter("json", path=path)
    assert isinstance(exporter, Exporter) and isinstance(exporter, JsonFileExporter)
    first = Report.from_dict(report.to_dict())
    first.duration_s = 1.0
    exporter.update(first)
    exporter.update(report)
    exporter.shutdown()
    exporter.shutdown()  # idempotent
    exporter.update(report)  # after shutdown: ignored, no raise
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["update", "update", "shutdown"]
    assert Report.from_dict(lines[0]["report"]).duration_s == 1.0
    assert Report.from_dict(lines[1]["report"]) == report
    assert lines[2]["report"] == report.to_dict()


def test_json_exporter_bad_path_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExporterError) as err:
        load_exporter("json", path=blocker / "export.jsonl")
    assert "\n" not in str(err.value) and str(blocker) in str(err.value)


def test_json_exporter_never_raises_into_the_producer(tmp_path, report, caplog):
    exporter = JsonFileExporter(tmp_path / "x.jsonl")
    bad = Report.from_dict(report.to_dict())
    bad.frontend.loop = object()  # type: ignore[assignment]  # a producer bug
    exporter.update(bad)
    exporter.update(bad)
    exporter.shutdown()
    assert len([r for r in caplog.records if "JSON exporter" in r.getMessage()]) == 1


def test_missing_otlp_exporter_gives_the_pip_line(otlp_not_installed, no_otlp_env):
    with pytest.raises(ExporterMissing) as err:
        load_exporter("otlp", endpoint="http://127.0.0.1:4318")
    message = str(err.value)
    assert "pip install loopprof-exporter-otlp" in message and "\n" not in message
    with pytest.raises(ExporterMissing, match="pip install loopprof-exporter-otlp"):
        exporter_from_options("http://127.0.0.1:4318")


def test_unknown_exporter_names_the_known_ones():
    with pytest.raises(ExporterMissing, match="known: json, otlp"):
        load_exporter("zipkin")


def test_builtin_json_works_without_entry_points(otlp_not_installed, tmp_path):
    assert available_exporters() == {"json": "loopprof.export:JsonFileExporter"}
    load_exporter("json", path=tmp_path / "a.jsonl").shutdown()


def test_bad_options_are_one_line(tmp_path):
    with pytest.raises(ExporterError, match="cannot create the 'json' exporter"):
        load_exporter("json", path=tmp_path / "a.jsonl", colour="red")


def test_no_url_and_no_variables_means_no_export(no_otlp_env, otlp_not_installed):
    assert exporter_from_options(None) is None
    assert exporter_from_options("  ") is None


@pytest.mark.parametrize("variable", export.OTLP_ENDPOINT_VARIABLES)
def test_either_standard_variable_turns_export_on(variable, monkeypatch, no_otlp_env, otlp_not_installed):
    monkeypatch.setenv(variable, "http://127.0.0.1:4318")
    with pytest.raises(ExporterMissing):  # it tried to load the OTLP exporter
        exporter_from_options(None)


# ------------------------------------------------------------------------------ with the OTLP distribution


@pytest.fixture
def otlp_installed():
    if "otlp" not in available_exporters():
        pytest.skip("loopprof-exporter-otlp is not installed (pip install -e exporters/loopprof-exporter-otlp)")


def test_otlp_is_found_through_the_entry_point(otlp_installed):
    assert available_exporters()["otlp"] == "loopprof_exporter_otlp:OtlpExporter"


@pytest.mark.parametrize(
    ("url", "protocol", "endpoint"),
    [
        ("http://127.0.0.1:4318", "http/protobuf", "http://127.0.0.1:4318/v1/metrics"),
        ("http://127.0.0.1:4318/", "http/protobuf", "http://127.0.0.1:4318/v1/metrics"),
        ("https://otel.example:443/prefix", "http/protobuf", "https://otel.example:443/prefix/v1/metrics"),
        ("http://127.0.0.1:4318/v1/metrics", "http/protobuf", "http://127.0.0.1:4318/v1/metrics"),
        ("http://127.0.0.1:4317", "grpc", "127.0.0.1:4317"),
    ],
)
def test_otlp_url_and_protocol(url, protocol, endpoint, monkeypatch, no_otlp_env, otlp_installed):
    if protocol == "grpc":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    exporter = exporter_from_options(url)
    try:
        assert exporter.protocol == protocol  # type: ignore[union-attr]
        assert exporter.endpoint == endpoint  # type: ignore[union-attr]
    finally:
        exporter.shutdown(timeout_s=1)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "protocol", "needle"),
    [
        ("127.0.0.1:4318", None, "wants a URL like http://"),
        ("ftp://127.0.0.1:4318", None, "wants a URL like http://"),
        ("http://127.0.0.1:4318", "http/json", "use grpc or http/protobuf"),
    ],
)
def test_bad_otlp_settings_are_one_line(url, protocol, needle, monkeypatch, no_otlp_env, otlp_installed):
    if protocol:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    with pytest.raises(ExporterError) as err:
        exporter_from_options(url)
    assert needle in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------- packaging
def _wheel_paths(source: Path, out: Path) -> list[str]:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


@pytest.mark.slow
def test_wheels_hold_only_their_own_packages(tmp_path):
    """No wheel may install a bare top-level ``exporters`` (or ``tests``) module; each holds one package."""
    core = _wheel_paths(ROOT, tmp_path / "core")
    dist = _wheel_paths(OTLP_DIST, tmp_path / "otlp")
    core_tops = {p.split("/", 1)[0] for p in core}
    dist_tops = {p.split("/", 1)[0] for p in dist}
    assert {t for t in core_tops if not t.endswith(".dist-info")} == {"loopprof"}
    assert {t for t in dist_tops if not t.endswith(".dist-info")} == {"loopprof_exporter_otlp"}
    for path in core + dist:
        assert not path.startswith(("exporters", "tests", "examples")), path
        assert ".." not in path and not path.startswith("/")
    entry_points = next(p for p in dist if p.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(next((tmp_path / "otlp").glob("*.whl"))) as zf:
        text = zf.read(entry_points).decode()
    assert "[loopprof.exporters]" in text and "otlp = loopprof_exporter_otlp:OtlpExporter" in text
    assert "loopprof_exporter_otlp/metrics.py" in dist
