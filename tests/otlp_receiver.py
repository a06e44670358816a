"""A real OTLP receiver for tests: ``rotel`` (a Rust OpenTelemetry collector from PyPI) on free 127.0.0.1 ports.

rotel's ``--debug-log metrics --debug-log-verbosity detailed`` prints every metric it receives in the collector's
debug layout; :func:`parse_debug_metrics` turns that text back into :class:`ReceivedPoint` records so a test can
assert on what actually crossed the wire (names, units, types, attributes, values), over HTTP and gRPC.

Usage::

    with RotelReceiver() as rx:
        run_something(otlp_url=rx.http_url)            # or rx.grpc_url with OTEL_EXPORTER_OTLP_PROTOCOL=grpc
        points = rx.wait_for(lambda ps: any(p.name == "loopprof.loop.lag" for p in ps), timeout_s=10)

The ``rotel_receiver`` fixture below wraps it for pytest and skips cleanly when rotel is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from examples.harness import free_port

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TYPED = re.compile(r"^(\w+)\((.*)\)$")


@dataclass
class ReceivedPoint:
    """One data point as the receiver printed it."""

    name: str
    unit: str
    data_type: str  # "Gauge" | "Sum" | "Histogram" | "Summary" | ...
    value: float | None
    attributes: dict[str, object]
    description: str = ""
    is_monotonic: bool | None = None
    temporality: str | None = None  # "AGGREGATION_TEMPORALITY_CUMULATIVE" | ..._DELTA
    start_ns: int | None = None
    time_ns: int | None = None
    resource: dict[str, object] = field(default_factory=dict)
    scope: str = ""


def rotel_binary() -> Path | None:
    """The ``rotel-agent`` binary shipped inside the ``rotel`` wheel, or None when rotel is not installed."""
    spec = importlib.util.find_spec("rotel")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "rotel-agent"
    return path if path.exists() else None


def _typed_value(text: str) -> object:
    """``Int(12)`` → 12, ``Str(x)`` → "x", ``Bool(true)`` → True, ``Double(0.5)`` → 0.5."""
    m = _TYPED.match(text.strip())
    if not m:
        return text.strip()
    kind, raw = m.groups()
    if kind == "Int":
        return int(raw)
    if kind == "Double":
        return float(raw)
    if kind == "Bool":
        return raw == "true"
    return raw


def _arrow(line: str) -> tuple[str, str] | None:
    """``     -> key: value`` → (key, value)."""
    stripped = line.strip()
    if not stripped.startswith("-> "):
        return None
    key, _, value = stripped[3:].partition(": ")
    return key, value


def parse_debug_metrics(text: str) -> list[ReceivedPoint]:
    """Parse rotel's detailed metrics debug log (the OpenTelemetry Collector's debug-exporter layout)."""
    points: list[ReceivedPoint] = []
    resource: dict[str, object] = {}
    scope = ""
    desc: dict[str, str] = {}
    current: ReceivedPoint | None = None
    section = ""
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.rstrip()
        arrow = _arrow(line)
        if line.startswith("ResourceMetrics #"):
            resource, section = {}, "resource"
        elif line.startswith("Resource attributes:"):
            section = "resource"
        elif line.startswith("InstrumentationScope "):
            scope = line.split(" ", 1)[1].strip()
        elif line.startswith("Metric #"):
            desc, section, current = {}, "descriptor", None
        elif line.startswith("Descriptor:"):
            section = "descriptor"
        elif line.startswith(("NumberDataPoints #", "HistogramDataPoints #", "SummaryDataPoints #")):
            current = ReceivedPoint(
                name=desc.get("Name", ""),
                unit=desc.get("Unit", ""),
                data_type=desc.get("DataType", ""),
                value=None,
                attributes={},
                description=desc.get("Description", ""),
                is_monotonic=None if "IsMonotonic" not in desc else desc["IsMonotonic"] == "true",
                temporality=desc.get("AggregationTemporality"),
                resource=dict(resource),
                scope=scope,
            )
            points.append(current)
            section = "point"
        elif line.startswith("Data point attributes:"):
            section = "attributes"
        elif arrow is not None:
            key, value = arrow
            if section == "resource":
                resource[key] = _typed_value(value)
            elif section == "descriptor":
                desc[key] = value.strip()
            elif section == "attributes" and current is not None:
                current.attributes[key] = _typed_value(value)
        elif current is not None and ": " in line and not line.startswith(" "):
            key, _, value = line.partition(": ")
            if key == "Value" or key == "Sum":
                current.value = float(value)
            elif key == "StartTimestamp":
                current.start_ns = int(value)
            elif key == "Timestamp":
                current.time_ns = int(value)
    return points


class RotelReceiver:
    """rotel on two free 127.0.0.1 ports (OTLP/gRPC and OTLP/HTTP), killed on exit even if the test fails."""

    def __init__(self, ready_timeout_s: float = 10.0) -> None:
        binary = rotel_binary()
        if binary is None:
            raise RuntimeError("rotel is not installed: pip install rotel")
        self.binary = binary
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.ready_timeout_s = ready_timeout_s
        self._dir = tempfile.TemporaryDirectory(prefix="loopprof-rotel-")
        self.log_path = Path(self._dir.name) / "stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """Base URL for OTLP/HTTP (exporters add ``/v1/metrics``)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def __enter__(self) -> RotelReceiver:
        d = Path(self._dir.name)
        cmd = [
            str(self.binary),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.http_port}",
            "--exporter",
            "blackhole",
            "--debug-log",
            "metrics",
            "--debug-log-verbosity",
            "detailed",
            "--disable-batching",
            "--pid-file",
            str(d / "rotel.pid"),
            "--log-file",
            str(d / "rotel.log"),
        ]
        # rotel-agent links libpython dynamically; a pyenv interpreter keeps it in its own LIBDIR, off the loader path.
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR")
        if libdir:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, env.get("LD_LIBRARY_PATH")]))
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        pending = {self.grpc_port, self.http_port}
        while pending:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"rotel exited with {self.proc.returncode}: {self.text()[-2000:]}")
            for port in list(pending):
                with socket.socket() as s:
                    s.settimeout(0.2)
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"rotel did not listen on {sorted(pending)} within {self.ready_timeout_s} s")
            if pending:
                time.sleep(0.02)

    def text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def points(self) -> list[ReceivedPoint]:
        return parse_debug_metrics(self.text())

    def wait_for(
        self, predicate: Callable[[list[ReceivedPoint]], bool], timeout_s: float = 10.0
    ) -> list[ReceivedPoint]:
        """Poll the receiver's output until ``predicate(points)`` holds; AssertionError with the output if not."""
        deadline = time.monotonic() + timeout_s
        while True:
            points = self.points()
            if predicate(points):
                return points
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the OTLP receiver did not get the expected metrics within {timeout_s} s; "
                    f"got {len(points)} points: {sorted({p.name for p in points})}"
                )
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)
        self._dir.cleanup()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def latest(points: list[ReceivedPoint], name: str, **attributes: object) -> ReceivedPoint | None:
    """The last received point of ``name`` whose attributes include ``attributes``."""
    for point in reversed(points):
        if point.name == name and all(point.attributes.get(k) == v for k, v in attributes.items()):
            return point
    return None


__all__ = ["ReceivedPoint", "RotelReceiver", "free_port", "latest", "parse_debug_metrics", "rotel_binary"]


def rotel_receiver_fixture():
    """Generator for a pytest fixture: ``rotel_receiver = pytest.fixture(rotel_receiver_fixture)``."""
    import pytest

    if rotel_binary() is None:
        pytest.skip("rotel is not installed (pip install rotel)")
    with RotelReceiver() as receiver:
        yield receiver
