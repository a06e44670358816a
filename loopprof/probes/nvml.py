"""GPU utilisation through NVML (``nvidia-ml-py``), when a GPU and its driver are present.

Without either, :func:`open_gpus` returns ``None`` and the report's ``gpu_utilization`` stays ``null``.
"""

from __future__ import annotations

import contextlib
from typing import Any


class Gpus:
    """Handles on every visible GPU; ``utilization()`` is the mean busy share over the last sample period."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles

    @property
    def count(self) -> int:
        return len(self._handles)

    def utilization(self) -> float | None:
        values = []
        for handle in self._handles:
            try:
                values.append(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0)
            except Exception:  # a GPU that fell off the bus is not a reason to stop profiling
                continue
        return sum(values) / len(values) if values else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()


def open_gpus() -> Gpus | None:
    try:
        import pynvml  # from nvidia-ml-py
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded on machines without a GPU
        return None
    if not handles:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
        return None
    return Gpus(pynvml, handles)
