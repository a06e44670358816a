"""Shared helpers for the OTLP exporter's tests.

The real OTLP receiver (rotel) helper lives in the loopprof repository's ``tests/otlp_receiver.py`` so the core's
end-to-end tests (attach, run, embedded) use the same one; make that repository root importable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loopprof.report import Report, load_report

REPO_ROOT = Path(__file__).resolve().parents[3]
if (REPO_ROOT / "tests" / "otlp_receiver.py").exists() and str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.otlp_receiver import rotel_receiver_fixture  # noqa: E402

rotel_receiver = pytest.fixture(rotel_receiver_fixture)


@pytest.fixture
def golden_report() -> Report:
    """A complete frontend-bound report (every section measured, several tokenizer operations)."""
    return load_report(REPO_ROOT / "tests" / "data" / "frontend_bound.json")
