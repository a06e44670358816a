"""Scrape a Prometheus ``/metrics`` URL for the engine's own view of its queue (vLLM's ``vllm:*`` gauges).

The engine knows best whether requests wait for it; the frontend cannot see that. Parsing uses
``prometheus_client``'s text parser rather than a hand-written one.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from loopprof.integrations.vllm import METRIC_NAMES

# Gauges read from the engine, by the names vLLM uses (older releases in the second place).
WAITING = METRIC_NAMES["waiting"]
RUNNING = METRIC_NAMES["running"]
KV_CACHE = METRIC_NAMES["kv_cache_usage"]


class ScrapeError(Exception):
    """The metrics URL did not answer with Prometheus text; the message is one line."""


@dataclass
class MetricsTotals:
    """Running sums of the scraped gauges, so a window's average is a difference of two snapshots."""

    scrapes: int = 0
    failures: int = 0
    waiting_sum: float = 0.0
    waiting_scrapes: int = 0
    running_sum: float = 0.0
    running_scrapes: int = 0
    kv_cache_sum: float = 0.0
    kv_cache_scrapes: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def parse_gauges(text: str) -> dict[str, float]:
    """Sum each gauge over its label sets (several engines or models add up)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == family.name:
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


def first_of(gauges: dict[str, float], names: tuple[str, ...]) -> float | None:
    for name in names:
        if name in gauges:
            return gauges[name]
    return None


def scrape(url: str, timeout_s: float = 1.0) -> dict[str, float]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read(4 * 1024 * 1024).decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScrapeError(f"cannot scrape {url}: {reason}") from None
    try:
        return parse_gauges(body)
    except (ValueError, TypeError) as exc:
        raise ScrapeError(f"{url} did not return Prometheus text: {exc}") from None


def add_scrape(totals: MetricsTotals, gauges: dict[str, float]) -> None:
    totals.scrapes += 1
    waiting = first_of(gauges, WAITING)
    running = first_of(gauges, RUNNING)
    kv = first_of(gauges, KV_CACHE)
    # A gauge the server does not export is counted nowhere, so its average stays unmeasured (None).
    if waiting is not None:
        totals.waiting_sum += waiting
        totals.waiting_scrapes += 1
    if running is not None:
        totals.running_sum += running
        totals.running_scrapes += 1
    if kv is not None:
        totals.kv_cache_sum += kv
        totals.kv_cache_scrapes += 1
