"""OTLP export from all three ways of running loopprof, over both protocols, against a real receiver (rotel).

Each test compares what crossed the wire with the JSON report of the same window: the names and units the
README lists, the ``process.pid`` / ``loopprof.role`` attributes, and the values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.otlp_receiver import RotelReceiver, latest, rotel_binary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(rotel_binary() is None, reason="rotel (the OTLP receiver) is not installed: pip install rotel"),
]
REPO = Path(__file__).resolve().parent.parent

# A small asyncio server-like process: it wakes often, does Python work on the loop, collects garbage.
TARGET = textwrap.dedent(
    """
    import asyncio, gc, sys, time

    async def main(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.004:
                pass
            [[] for _ in range(2000)]
            gc.collect(0)
            await asyncio.sleep(0.006)

    print("ready", flush=True)
    asyncio.run(main(float(sys.argv[1])))
    """
)


def _env(rx: RotelReceiver, protocol: str) -> dict[str, str]:
    env = dict(os.environ)
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = rx.grpc_url if protocol == "grpc" else rx.http_url
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "500"
    env["OTEL_SERVICE_NAME"] = "otlp-modes-test"
    return env


def _assert_matches(rx: RotelReceiver, report_path: Path, pid: int) -> None:
    report = json.loads(report_path.read_text())
    fe = next((f for f in report["frontends"] if f["pid"] == pid), report["frontend"])
    points = rx.wait_for(lambda ps: latest(ps, "loopprof.verdict.confidence") is not None, timeout_s=15)
    util = latest(points, "loopprof.loop.utilization", **{"process.pid": pid})
    assert util is not None, sorted({p.name for p in points})
    assert util.unit == "1" and util.data_type == "Gauge"
    assert util.attributes["loopprof.role"] == "frontend"
    assert util.resource.get("service.name") == "otlp-modes-test"
    # The last batch is the report's window, give or take the last instant.
    assert util.value == pytest.approx(fe["loop"]["busy_fraction"], abs=0.05)
    lag = latest(points, "loopprof.loop.lag", **{"process.pid": pid, "loopprof.percentile": "max"})
    assert lag is not None and lag.unit == "s"
    assert lag.value == pytest.approx(fe["loop"]["lag_ms"]["max"] / 1000.0, rel=0.25, abs=0.003)
    verdict = [p for p in points if p.name == "loopprof.verdict"]
    current = {p.attributes["loopprof.bottleneck"] for p in verdict if p.value == 1}
    assert report["verdict"]["bottleneck"] in current


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_embedded_agent_exports_continuously(tmp_path: Path, protocol: str) -> None:
    report_path = tmp_path / "embedded.json"
    script = TARGET.replace('print("ready", flush=True)', "import loopprof; loopprof.start()") + "\nloopprof.stop()\n"
    with RotelReceiver() as rx:
        env = _env(rx, protocol) | {"LOOPPROF_JSON": str(report_path), "LOOPPROF_EXPORT_INTERVAL_S": "0.5"}
        proc = subprocess.run(
            [sys.executable, "-c", script, "3"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        # Exported while running, not only at the end: several batches arrived.
        assert len({p.time_ns for p in rx.points() if p.name == "loopprof.loop.utilization"}) >= 2
        report = json.loads(report_path.read_text())
        pid = report["target"]["pid"]
        _assert_matches(rx, report_path, pid)
        gc_points = [p for p in rx.points() if p.name == "cpython.gc.collections"]
        assert gc_points and gc_points[-1].unit == "{collection}"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_attach_exports(tmp_path: Path, protocol: str) -> None:
    report_path = tmp_path / "attach.json"
    target = subprocess.Popen([sys.executable, "-c", TARGET, "12"], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        with RotelReceiver() as rx:
            done = subprocess.run(
                [sys.executable, "-m", "loopprof", "attach", str(target.pid), "--duration", "4", "--no-live",
                 "--json", str(report_path)],
                env=_env(rx, protocol), cwd=REPO, capture_output=True, text=True, timeout=90,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            _assert_matches(rx, report_path, target.pid)
    finally:
        target.kill()
        target.wait(timeout=10)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_run_exports(tmp_path: Path, protocol: str) -> None:
    report_path = tmp_path / "run.json"
    script = tmp_path / "target.py"
    script.write_text(TARGET)
    with RotelReceiver() as rx:
        done = subprocess.run(
            [sys.executable, "-m", "loopprof", "run", "--no-live", "--json", str(report_path), "--",
             sys.executable, str(script), "4"],
            env=_env(rx, protocol), cwd=REPO, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(report_path.read_text())
        frontends = [p["pid"] for p in report["target"]["processes"] if p["role"] == "frontend"]
        assert frontends, report["target"]
        time.sleep(0.5)
        _assert_matches(rx, report_path, frontends[0])
