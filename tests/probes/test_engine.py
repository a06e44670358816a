"""Engine busy share from outside, against a real child process whose duty cycle the test plants."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from loopprof.analysis.engine import engine_window
from loopprof.probes import nvml, prometheus
from loopprof.probes.engine import EngineProbe

# A child that spins (working) for BUSY_S and then waits on its input for IDLE_S, and reports its own truth.
DUTY_CHILD = r"""
import select, os, sys, time, queue, threading
busy_s, idle_s, how = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
r, w = os.pipe()
q = queue.Queue()
poller = select.poll(); poller.register(r, select.POLLIN)
busy_total = 0.0
start = time.perf_counter()
print("ready", flush=True)
while time.perf_counter() - start < 30:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < busy_s:
        pass
    busy_total += time.perf_counter() - t0
    if how == "poll":
        poller.poll(idle_s * 1000)
    else:
        try:
            q.get(timeout=idle_s)
        except queue.Empty:
            pass
"""


@pytest.fixture
def duty_child(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    busy_s, idle_s, how = request.param
    proc = subprocess.Popen(
        [sys.executable, "-c", DUTY_CHILD, str(busy_s), str(idle_s), how], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("duty_child", "expected"),
    [((0.03, 0.07, "poll"), 0.30), ((0.06, 0.04, "queue"), 0.60)],
    indirect=["duty_child"],
    ids=["poll-30pct", "queue-60pct"],
)
def test_engine_busy_matches_planted_duty_cycle(duty_child: subprocess.Popen[str], expected: float) -> None:
    probe = EngineProbe([duty_child.pid], rate_hz=200, gpu=False)
    probe.start()
    try:
        first = probe.snapshot()
        time.sleep(3.0)
        last = probe.snapshot()
    finally:
        probe.stop()
    engine = engine_window(first, last)
    assert engine.busy_fraction is not None
    # Spinning in Python on a shared 2-core machine can be descheduled; the planted share is a floor-ish truth.
    assert engine.busy_fraction == pytest.approx(expected, abs=0.08)
    assert "samples" in engine.signals and "process_cpu" in engine.signals
    assert engine.gpu_utilization is None


def test_engine_that_exits_is_reported_not_crashed() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    probe = EngineProbe([proc.pid], rate_hz=100, gpu=False)
    probe.start()
    first = probe.snapshot()
    proc.wait(timeout=10)
    time.sleep(0.5)
    last = probe.snapshot()
    probe.stop()
    assert any("exited" in e for e in last["errors"])
    engine_window(first, last)  # must not raise


VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny"} 8.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 5.0
vllm:num_requests_waiting{engine="1",model_name="tiny"} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.25
"""


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = VLLM_METRICS.encode() if self.path == "/metrics" else b"nope"
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_scrape_reads_vllm_gauges_summed_over_engines(metrics_server: str) -> None:
    gauges = prometheus.scrape(metrics_server)
    assert gauges["vllm:num_requests_waiting"] == 7.0
    assert gauges["vllm:num_requests_running"] == 8.0


def test_metrics_averaged_over_the_window(metrics_server: str) -> None:
    probe = EngineProbe([], metrics_url=metrics_server, scrape_interval_s=0.1, gpu=False)
    probe.start()
    first = probe.snapshot()
    time.sleep(0.6)
    last = probe.snapshot()
    probe.stop()
    engine = engine_window(first, last)
    assert engine.waiting_requests == 7.0
    assert engine.running_requests == 8.0
    assert engine.kv_cache_usage == 0.25
    assert engine.signals == ["metrics"]
    assert engine.busy_fraction is None  # no engine process given: not measured, not 0


def test_scrape_of_a_dead_endpoint_is_one_line() -> None:
    with pytest.raises(prometheus.ScrapeError) as info:
        prometheus.scrape("http://127.0.0.1:9/metrics", timeout_s=0.5)
    assert "\n" not in str(info.value) and "cannot scrape" in str(info.value)


def test_no_gpu_means_null_not_zero() -> None:
    gpus = nvml.open_gpus()
    if gpus is not None:
        pytest.skip("a GPU is present; the GPU path is exercised on the device machine")
    probe = EngineProbe([], gpu=True)
    probe.start()
    snap = probe.snapshot()
    probe.stop()
    assert snap["gpu"] is None
    assert engine_window(snap, snap).gpu_utilization is None
