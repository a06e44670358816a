"""One warning for an endpoint that is down, instead of the OpenTelemetry exporters' log line per failure.

The official exporters log every failed export and every retry (several lines every few seconds for as long as
a collector is down); in a profiler attached to a production server that is a flood in the operator's log.
:class:`ReportOnceExporter` wraps the official exporter, silences OpenTelemetry's log records *only on the
threads that are inside our export right now* (so an application that uses OpenTelemetry itself keeps all of
its own logs), keeps the silenced reason, and logs a single warning that names the endpoint and that reason.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

_log = logging.getLogger("loopprof_exporter_otlp")
_state = threading.local()
_installed_on: set[str] = set()
_install_lock = threading.Lock()
_REASON_CHARS = 240
_MAX_REASONS = 8
_OS_ERROR = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_RETRY_CHATTER = re.compile(r" encountered while exporting .*?, retrying in [\d.]+s\.?")


class _MuteInsideExport(logging.Filter):
    """Drops records logged on a thread that is inside :func:`muted`, keeping the first few warnings' text
    (one of them names the cause: connection refused, 404, deadline exceeded)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(_state, "muted", False):
            return True
        reasons = getattr(_state, "reasons", None)
        if record.levelno >= logging.WARNING and reasons is not None and len(reasons) < _MAX_REASONS:
            try:
                reasons.append(record.getMessage())
            except Exception:
                reasons.append(str(record.msg))
        return False


_FILTER = _MuteInsideExport()


def install_log_filter() -> None:
    """Put the filter on every OpenTelemetry logger that exists now (the exporters create theirs at import).

    Logger filters do not apply to records propagated from child loggers, so each logger needs its own.
    """
    with _install_lock:
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if name.startswith("opentelemetry") and isinstance(logger, logging.Logger) and name not in _installed_on:
                logger.addFilter(_FILTER)
                _installed_on.add(name)


@contextmanager
def muted() -> Iterator[None]:
    """Silence OpenTelemetry logging on this thread; ``_state.reasons`` keeps what it would have said."""
    previous = getattr(_state, "muted", False)
    _state.muted = True
    _state.reasons = []
    try:
        yield
    finally:
        _state.muted = previous


def last_reason() -> str | None:
    """The silenced record's cause in a few words: the OS error when there is one, without retry chatter."""
    reasons = [" ".join(str(r).split()) for r in getattr(_state, "reasons", None) or []]
    if not reasons:
        return None
    for line in reasons:
        os_error = _OS_ERROR.search(line)
        if os_error:
            return os_error.group(1).strip()
    line = _RETRY_CHATTER.sub("", reasons[0].removeprefix("Transient error "))
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 1] + "…"


class ReportOnceExporter(MetricExporter):
    """Delegates to an official OTLP exporter; the first failure becomes one warning, later ones are silent."""

    def __init__(self, inner: MetricExporter, describe: str) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self.inner = inner
        self.describe = describe
        self.failures = 0
        self.successes = 0
        self.warned = False
        self._lock = threading.Lock()
        install_log_filter()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        with muted():
            try:
                result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
                reason = last_reason()
            except Exception as exc:  # never let an exporter bug reach the SDK's log-per-failure path
                result = MetricExportResult.FAILURE
                reason = f"{type(exc).__name__}: {exc}"
        if result is MetricExportResult.SUCCESS:
            self.successes += 1
        else:
            self._failed(reason)
        return result

    def _failed(self, reason: str | None) -> None:
        with self._lock:
            self.failures += 1
            if self.warned:
                return
            self.warned = True
        _log.warning(
            "loopprof: OTLP export to %s failed (%s); profiling goes on and metrics are dropped until it answers "
            "(reported once)",
            self.describe,
            " ".join((reason or "no reason given").split()),
        )

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        with muted():
            try:
                return bool(self.inner.force_flush(timeout_millis=timeout_millis))
            except Exception:
                return False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        with muted(), suppress(Exception):
            self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
