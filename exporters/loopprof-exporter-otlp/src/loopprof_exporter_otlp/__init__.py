"""OTLP export for loopprof: ``OtlpExporter`` is registered as the ``otlp`` entry of ``loopprof.exporters``."""

from loopprof_exporter_otlp.exporter import OtlpExporter
from loopprof_exporter_otlp.metrics import METRICS, MetricSpec, Point, report_points

__all__ = ["METRICS", "MetricSpec", "OtlpExporter", "Point", "report_points"]
