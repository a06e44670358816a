"""End to end against a real OTLP receiver (rotel on 127.0.0.1), over OTLP/HTTP and OTLP/gRPC.

What arrived at the receiver is compared with what the exported report says: every metric name, unit, type,
attribute and value, plus the resource the standard ``OTEL_*`` variables ask for. Then the failure modes: a
receiver that is down and one that accepts connections and never answers must cost bounded time and memory,
give exactly one warning and never raise.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from loopprof.export import exporter_from_options, load_exporter
from loopprof.report import Report
from loopprof_exporter_otlp import METRICS, OtlpExporter, report_points
from tests.otlp_receiver import ReceivedPoint, RotelReceiver, free_port, latest

pytestmark = pytest.mark.slow
PROTOCOLS = ["http/protobuf", "grpc"]
SPECS = {spec.name: spec for spec in METRICS}
OTLP_TYPE = {"gauge": "Gauge", "counter": "Sum"}


def _url(rx: RotelReceiver, protocol: str) -> str:
    return rx.grpc_url if protocol == "grpc" else rx.http_url


def last_batch(points: list[ReceivedPoint]) -> list[ReceivedPoint]:
    """The points of the most recent export (one collection shares one timestamp)."""
    if not points:
        return []
    newest = max(p.time_ns or 0 for p in points)
    return [p for p in points if p.time_ns == newest]


def _key(name: str, attributes) -> tuple:
    return name, tuple(sorted(attributes.items()))


def _arrived(expected: Report):
    """Predicate: the latest export carries exactly the points of ``expected``."""
    want = {_key(p.name, p.attributes): p.value for p in report_points(expected)}

    def check(points: list[ReceivedPoint]) -> bool:
        got = {_key(p.name, p.attributes): p.value for p in last_batch(points)}
        return got.keys() == want.keys() and all(
            got[k] == pytest.approx(v, rel=1e-9, abs=1e-12) for k, v in want.items()
        )

    return check


def assert_matches_report(points: list[ReceivedPoint], report: Report) -> None:
    """Every point of every batch is well-formed; the last batch is exactly the report's points."""
    for p in points:
        spec = SPECS[p.name]
        assert p.unit == spec.unit, p.name
        assert p.data_type == OTLP_TYPE[spec.kind], p.name
        if spec.kind == "counter":
            assert p.is_monotonic is True
            assert p.temporality == "AGGREGATION_TEMPORALITY_CUMULATIVE"
        assert isinstance(p.attributes.get("process.pid"), int), p
        assert p.attributes.get("loopprof.role") in ("frontend", "engine", "other"), p
        extra = set(p.attributes) - {"process.pid", "loopprof.role"}
        assert extra == set(spec.attributes) or (p.name == "cpython.gc.collections" and not extra), p
    got = {_key(p.name, p.attributes): p.value for p in last_batch(points)}
    want = {_key(p.name, p.attributes): p.value for p in report_points(report)}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_golden_report_arrives_intact(rotel_receiver, golden_report, protocol, monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "llm-frontend")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=serving")
    exporter = load_exporter("otlp", endpoint=_url(rotel_receiver, protocol), protocol=protocol, interval_s=0.3)
    try:
        exporter.update(golden_report)
        points = rotel_receiver.wait_for(_arrived(golden_report), timeout_s=15)
    finally:
        exporter.shutdown(timeout_s=5)
    assert_matches_report(points, golden_report)
    resource = points[-1].resource
    assert resource["service.name"] == "llm-frontend"
    assert resource["deployment.environment"] == "test" and resource["team"] == "serving"
    assert points[-1].scope.startswith("loopprof")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shutdown_sends_the_last_update(rotel_receiver, golden_report, protocol):
    """A window shorter than the export interval still arrives: shutdown exports the final state."""
    exporter = load_exporter("otlp", endpoint=_url(rotel_receiver, protocol), protocol=protocol, interval_s=60)
    exporter.update(golden_report)
    t0 = time.monotonic()
    exporter.shutdown(timeout_s=5)
    assert time.monotonic() - t0 < 5.5
    assert_matches_report(rotel_receiver.wait_for(_arrived(golden_report), timeout_s=10), golden_report)


def test_standard_variables_alone_configure_grpc_export(rotel_receiver, golden_report, monkeypatch):
    """No --otlp: OTEL_EXPORTER_OTLP_ENDPOINT + _PROTOCOL + _HEADERS are enough, as for any OTel exporter."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rotel_receiver.grpc_url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=loopprof")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    exporter = exporter_from_options(None)
    assert isinstance(exporter, OtlpExporter) and exporter.protocol == "grpc"
    try:
        exporter.update(golden_report)
        points = rotel_receiver.wait_for(_arrived(golden_report), timeout_s=15)
    finally:
        exporter.shutdown(timeout_s=5)
    assert points[-1].resource["service.name"] == "loopprof"


def test_embedded_agent_report_arrives_with_planted_values(rotel_receiver):
    """A real Agent on a real loop, its reports fed every 0.2 s from another thread, as the embedded producer does.

    Ground truth planted and timed here: loop stalls of known length (the longest one is the lag max the
    receiver must show) and a known number of collections.
    """
    agent_mod = pytest.importorskip("loopprof.agent")
    agent = agent_mod.Agent()
    exporter = load_exporter("otlp", endpoint=rotel_receiver.http_url, interval_s=0.25)
    stop = threading.Event()
    blocks_s: list[float] = []
    reports: list[Report] = []

    def feed() -> None:
        while not stop.wait(0.2):
            exporter.update(agent.report())

    def stall(seconds: float) -> None:
        t0 = time.perf_counter()
        time.sleep(seconds)
        blocks_s.append(time.perf_counter() - t0)

    def collect(times: int) -> None:
        t0 = time.perf_counter()
        for _ in range(times):
            gc.collect(0)
        blocks_s.append(time.perf_counter() - t0)

    async def planted() -> None:
        agent.start()
        loop = asyncio.get_running_loop()
        for seconds in (0.02, 0.06, 0.03):
            loop.call_soon(stall, seconds)
            await asyncio.sleep(0.05)
        loop.call_soon(collect, 7)
        await asyncio.sleep(0.3)
        stop.set()
        feeder.join(5)
        reports.append(agent.report())
        exporter.update(reports[-1])

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        asyncio.run(planted())
    finally:
        stop.set()
        agent.stop()
        exporter.shutdown(timeout_s=5)
    final = reports[0]
    points = rotel_receiver.wait_for(_arrived(final), timeout_s=15)
    assert_matches_report(points, final)
    lag_max = latest(last_batch(points), "loopprof.loop.lag", **{"loopprof.percentile": "max"})
    assert lag_max is not None
    # the loop thread may also wait for a CPU on a busy machine: allow that on top of the planted block
    assert max(blocks_s) * 0.9 <= lag_max.value <= max(blocks_s) + 0.15, (lag_max.value, blocks_s)
    gcs = [p for p in last_batch(points) if p.name == "cpython.gc.collections"]
    assert sum(p.value for p in gcs) >= 7


# ------------------------------------------------------------------------------------------- failure modes
@pytest.fixture
def stalling_endpoint() -> Iterator[str]:
    """A TCP socket on 127.0.0.1 that accepts connections and never answers (a hung collector)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def _exporter_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("OtelPeriodic", "loopprof-otlp"))]


def _drive_failing_endpoint(url: str, protocol: str, report: Report, seconds: float, caplog) -> dict[str, float]:
    """Update every 20 ms for ``seconds`` against a failing endpoint; measure what it costs the producer."""
    caplog.set_level(logging.DEBUG)
    exporter = load_exporter("otlp", endpoint=url, protocol=protocol, interval_s=0.2, timeout_s=1.0)
    tracemalloc.start()
    try:
        worst_update = 0.0
        start = time.monotonic()
        mem_early = None
        while time.monotonic() - start < seconds:
            t0 = time.perf_counter()
            exporter.update(report)
            worst_update = max(worst_update, time.perf_counter() - t0)
            if mem_early is None and time.monotonic() - start > seconds / 3:
                mem_early = tracemalloc.get_traced_memory()[0]
            time.sleep(0.02)
        mem_late = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        t0 = time.monotonic()
        exporter.shutdown(timeout_s=1.0)
        shutdown_s = time.monotonic() - t0
    return {
        "worst_update_s": worst_update,
        "shutdown_s": shutdown_s,
        "growth_bytes": mem_late - (mem_early or mem_late),
        "failures": exporter.guard.failures,
    }


def _assert_one_warning(caplog, url_part: str) -> None:
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [f"{r.name}: {r.getMessage()}" for r in loud]
    message = loud[0].getMessage()
    assert url_part in message and "OTLP export" in message and "reported once" in message
    assert "\n" not in message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_receiver_down_costs_bounded_time_and_warns_once(golden_report, protocol, caplog, capfd):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cost = _drive_failing_endpoint(url, protocol, golden_report, seconds=2.0, caplog=caplog)
    assert cost["failures"] >= 2  # it kept trying, and kept quiet
    assert cost["worst_update_s"] < 0.05
    assert cost["shutdown_s"] < 1.5
    _assert_one_warning(caplog, url.removeprefix("http://"))
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stalling_receiver_costs_bounded_time_and_memory(golden_report, stalling_endpoint, protocol, caplog, capfd):
    cost = _drive_failing_endpoint(stalling_endpoint, protocol, golden_report, seconds=3.0, caplog=caplog)
    assert cost["failures"] >= 1
    assert cost["worst_update_s"] < 0.05  # the producer never waits for the network
    assert cost["shutdown_s"] < 1.5  # bounded by shutdown's own timeout, though the endpoint never answers
    assert cost["growth_bytes"] < 256 * 1024, cost  # no queue of unsent batches builds up
    _assert_one_warning(caplog, stalling_endpoint.removeprefix("http://"))
    assert "Traceback" not in capfd.readouterr().err
    deadline = time.monotonic() + 3.0  # the export stuck in the hung socket ends at its own timeout
    while _exporter_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _exporter_threads()
