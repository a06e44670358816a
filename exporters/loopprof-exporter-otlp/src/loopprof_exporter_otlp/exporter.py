"""The OTLP exporter: loopprof reports in, OpenTelemetry metrics out, over HTTP/protobuf or gRPC.

Built on the OpenTelemetry SDK rather than beside it: a ``MeterProvider`` with a ``PeriodicExportingMetricReader``
(its own daemon thread, exports never overlap, so a slow endpoint holds at most one batch in memory), the official
OTLP exporters (which read ``OTEL_EXPORTER_OTLP_*`` endpoint, headers, timeout, compression and certificates
themselves) and ``Resource.create`` (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``). Observable instruments
read the points of the latest report, so :meth:`OtlpExporter.update` only converts and swaps one reference.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from loopprof.export import ExporterError
from loopprof.report import Report
from loopprof_exporter_otlp._failure import ReportOnceExporter, muted
from loopprof_exporter_otlp.metrics import METRICS, MetricSpec, Point, report_points

HTTP = "http/protobuf"
GRPC = "grpc"
DEFAULT_INTERVAL_S = 5.0  # the SDK's 60 s default is too slow for watching a profile live
DEFAULT_SERVICE_NAME = "loopprof"
HTTP_METRICS_PATH = "/v1/metrics"

try:
    _VERSION: str | None = version("loopprof-exporter-otlp")
except PackageNotFoundError:
    _VERSION = None


def resolve_protocol(protocol: str | None = None) -> str:
    """The explicit protocol, else ``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL``/``_PROTOCOL``, else HTTP/protobuf."""
    raw = (
        protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or HTTP
    )
    value = raw.strip().lower()
    if value == GRPC:
        return GRPC
    if value in (HTTP, "http"):
        return HTTP
    raise ExporterError(
        f"unsupported OTLP protocol {raw!r}: use grpc or http/protobuf "
        "(set OTEL_EXPORTER_OTLP_PROTOCOL; the OpenTelemetry Python exporters do not send http/json)"
    )


def _checked_url(url: str) -> tuple[str, str, str, str, str]:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ExporterError(f"--otlp wants a URL like http://127.0.0.1:4318, got {url!r}")
    return parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment


def http_metrics_url(url: str) -> str:
    """``--otlp http://collector:4318`` is the base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` is: add
    ``/v1/metrics`` unless the URL already ends with it."""
    scheme, netloc, path, query, fragment = _checked_url(url)
    path = path.rstrip("/")
    if not path.endswith(HTTP_METRICS_PATH):
        path += HTTP_METRICS_PATH
    return urlunsplit((scheme, netloc, path, query, fragment))


def make_otlp_exporter(
    protocol: str, endpoint: str | None, headers: Mapping[str, str] | None, timeout_s: float | None
) -> MetricExporter:
    """The official exporter for ``protocol``; ``None`` arguments leave it to the standard variables."""
    kwargs: dict[str, object] = {}
    if headers:
        kwargs["headers"] = dict(headers)
    if timeout_s is not None:
        kwargs["timeout"] = float(timeout_s)
    if protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        if endpoint:
            scheme, netloc, *_ = _checked_url(endpoint)
            kwargs.update(endpoint=f"{scheme}://{netloc}", insecure=scheme == "http")
        return GrpcExporter(**kwargs)  # type: ignore[arg-type]
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    if endpoint:
        kwargs["endpoint"] = http_metrics_url(endpoint)
    return HttpExporter(**kwargs)  # type: ignore[arg-type]


def make_resource() -> Resource:
    """The SDK's resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``); ``service.name`` defaults to
    ``loopprof`` rather than the SDK's ``unknown_service:python``."""
    resource = Resource.create()
    if not (os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


class OtlpExporter:
    """loopprof's ``otlp`` exporter (entry point ``loopprof.exporters:otlp``).

    Args:
        endpoint: ``--otlp URL``; ``None`` uses ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``/``_ENDPOINT``.
        protocol: ``grpc`` or ``http/protobuf``; ``None`` uses ``OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL``.
        headers: extra request headers; ``None`` uses ``OTEL_EXPORTER_OTLP_[METRICS_]HEADERS``.
        timeout_s: per-export timeout; ``None`` uses ``OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT`` (10 s).
        interval_s: export period; ``None`` uses ``OTEL_METRIC_EXPORT_INTERVAL``, else 5 s.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        protocol: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.protocol = resolve_protocol(protocol)
        inner = make_otlp_exporter(self.protocol, endpoint, headers, timeout_s)
        self.endpoint = str(getattr(inner, "_endpoint", endpoint) or endpoint)
        self.guard = ReportOnceExporter(inner, f"{self.endpoint} ({self.protocol})")
        if interval_s is None and not os.environ.get("OTEL_METRIC_EXPORT_INTERVAL"):
            interval_s = DEFAULT_INTERVAL_S
        reader = PeriodicExportingMetricReader(
            self.guard, export_interval_millis=None if interval_s is None else interval_s * 1000.0
        )
        # No atexit hook: an unreachable endpoint must never hold up the exit of the profiled process.
        self._provider = MeterProvider(metric_readers=[reader], resource=make_resource(), shutdown_on_exit=False)
        self._points: dict[str, list[Point]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.update_errors = 0
        meter = self._provider.get_meter("loopprof", _VERSION)
        for spec in METRICS:
            create = meter.create_observable_gauge if spec.kind == "gauge" else meter.create_observable_counter
            create(spec.name, callbacks=[self._callback(spec)], unit=spec.unit, description=spec.description)

    def _callback(self, spec: MetricSpec):
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(p.value, p.attributes) for p in self._points.get(spec.name, ())]

        return observe

    def update(self, report: Report) -> None:
        """Convert now (a few dozen points) and swap one reference; the export thread reads it later."""
        try:
            grouped: dict[str, list[Point]] = {}
            for point in report_points(report):
                grouped.setdefault(point.name, []).append(point)
            self._points = grouped
        except Exception:  # a malformed report must not reach the producer; keep the previous points
            self.update_errors += 1

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Export the last update and stop, never taking longer than ``timeout_s`` even if the endpoint hangs."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        timeout_s = max(float(timeout_s), 0.01)

        def close() -> None:
            with muted(), contextlib.suppress(Exception):
                self._provider.shutdown(timeout_millis=timeout_s * 1000.0)

        closer = threading.Thread(target=close, name="loopprof-otlp-shutdown", daemon=True)
        closer.start()
        closer.join(timeout_s)
