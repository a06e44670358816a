"""Exporters: where a producer's live window goes besides the terminal and the JSON report.

The core never imports an exporter distribution. Exporters are found by name through the ``loopprof.exporters``
entry-point group (the way opentelemetry-python finds its exporters), so ``pip install loopprof-exporter-otlp``
is all it takes to add OTLP. The one built-in exporter, :class:`JsonFileExporter`, has no dependencies and
writes every update as one JSON line: it is for tests and debugging, and shows exactly what an exporter sees.

Producers (``attach``, ``run``, the embedded agent) call :meth:`Exporter.update` about once a second with the
window's report so far and :meth:`Exporter.shutdown` at the end. ``update`` runs on the producer's thread, so it
must be cheap and must never block or raise; the real work happens on the exporter's own thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from loopprof.report import Report

ENTRY_POINT_GROUP = "loopprof.exporters"
OTLP = "otlp"
# Built into the core, so they work even when loopprof itself is not installed as a distribution (a source
# checkout on sys.path has no entry-point metadata).
_BUILTIN: dict[str, str] = {"json": "loopprof.export:JsonFileExporter"}
# Where to get the exporters that are published separately.
_DISTRIBUTIONS: dict[str, str] = {OTLP: "loopprof-exporter-otlp"}
# The variables the OpenTelemetry specification defines for "send metrics here"; either one turns export on.
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_log = logging.getLogger(__name__)


class ExporterError(Exception):
    """An exporter that cannot be created; the message is one line that says what to do."""


class ExporterMissing(ExporterError):
    """The named exporter's distribution is not installed; the message is the ``pip install`` line."""


@runtime_checkable
class Exporter(Protocol):
    """What every exporter offers a producer."""

    def update(self, report: Report) -> None:
        """Take the latest cumulative state of the window. Cheap; never blocks, never raises."""

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Send what is pending and release everything, within ``timeout_s``; never raises."""


def available_exporters() -> dict[str, str]:
    """Exporter names and where each comes from (``module:attr``), built-ins first."""
    found = dict(_BUILTIN)
    for ep in _entry_points():
        found[ep.name] = ep.value
    return found


def load_exporter(name: str, **options: Any) -> Exporter:
    """Create the exporter registered as ``name`` with ``options``.

    Raises :class:`ExporterMissing` (one line with the ``pip install`` command) when no installed distribution
    provides ``name``, and :class:`ExporterError` when the exporter rejects its options.
    """
    factory = _find_factory(name)
    try:
        return factory(**options)
    except ExporterError:
        raise
    except (TypeError, ValueError) as exc:
        raise ExporterError(f"cannot create the {name!r} exporter: {exc}") from None


def exporter_from_options(otlp_url: str | None) -> Exporter | None:
    """The OTLP exporter the user asked for with ``--otlp URL`` or the ``OTEL_EXPORTER_OTLP_*`` variables.

    ``None`` when neither asks for export. The URL, when given, wins over the variables; protocol, headers,
    timeout, service name and resource attributes always come from the standard variables.
    """
    url = (otlp_url or "").strip()
    if url:
        return load_exporter(OTLP, endpoint=url)
    if any(os.environ.get(var, "").strip() for var in OTLP_ENDPOINT_VARIABLES):
        return load_exporter(OTLP)
    return None


def _entry_points() -> list[EntryPoint]:
    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # a broken distribution's metadata must not break profiling
        return []


def _find_factory(name: str) -> Any:
    for ep in _entry_points():
        if ep.name == name:
            try:
                return ep.load()
            except ImportError as exc:
                raise ExporterMissing(
                    f"the {name!r} exporter is installed but cannot be imported ({exc}); "
                    f"reinstall it: pip install --force-reinstall {_DISTRIBUTIONS.get(name, ep.value)}"
                ) from None
    if name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        return getattr(__import__(module, fromlist=[attr]), attr)
    dist = _DISTRIBUTIONS.get(name)
    if dist is not None:
        raise ExporterMissing(
            f"{name.upper()} export needs the {dist} package: pip install {dist}  (or: pip install 'loopprof[{name}]')"
        )
    known = ", ".join(sorted(set(_BUILTIN) | set(_DISTRIBUTIONS)))
    raise ExporterMissing(f"no loopprof exporter named {name!r} is installed (known: {known})")


class JsonFileExporter:
    """Appends every update to a JSON-lines file: ``{"time_unix_s": ..., "kind": "update", "report": {...}}``.

    Zero-dependency and synchronous on purpose: a test or a person debugging a producer can read exactly what
    the producer handed over, in order. The last line has ``"kind": "shutdown"``. A file that cannot be written
    is reported once and then ignored, so a full disk never stops profiling.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._closed = False
        self._failed = False
        self._last: Report | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ExporterError(f"cannot open {self.path} for the JSON exporter: {exc.strerror or exc}") from None

    def update(self, report: Report) -> None:
        self._write("update", report)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            if self._closed:
                return
            last = self._last
        self._write("shutdown", last)
        with self._lock:
            self._closed = True
            with contextlib.suppress(OSError):
                self._file.close()

    def _write(self, kind: str, report: Report | None) -> None:
        try:
            line = json.dumps(
                {"time_unix_s": time.time(), "kind": kind, "report": None if report is None else report.to_dict()},
                allow_nan=False,
            )
        except Exception as exc:  # a malformed report is the producer's bug; never raise into it
            self._fail(f"cannot serialise the report: {exc}")
            return
        with self._lock:
            if self._closed:
                return
            self._last = report
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:
                self._fail(f"cannot write {self.path}: {exc.strerror or exc}")

    def _fail(self, why: str) -> None:
        if not self._failed:
            self._failed = True
            _log.warning("loopprof: JSON exporter: %s; further errors are not reported", why)
