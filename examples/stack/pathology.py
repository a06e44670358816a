"""Planted problems, each off by default, each booking its own ground truth in :class:`FrontendTruth`.

The function names are what a profiler's stack samples will show; keep them descriptive.
"""

from __future__ import annotations

import asyncio
import threading
import time

from examples.stack.groundtruth import FrontendTruth
from examples.stack.settings import StackSettings

_live_heap: list[object] = []  # long-lived objects that make every full collection expensive


def blocking_callback(truth: FrontendTruth, block_s: float) -> None:
    """Synchronous CPU work on the event loop (say, a big json.dumps or a sync SDK call): every request stalls."""
    with truth.timed_block():
        deadline = time.perf_counter() + block_s
        while time.perf_counter() < deadline:
            pass


def _schedule_blocks(loop: asyncio.AbstractEventLoop, truth: FrontendTruth, every_s: float, block_s: float) -> None:
    def fire() -> None:
        blocking_callback(truth, block_s)
        loop.call_later(every_s, fire)

    loop.call_later(every_s, fire)


def gil_hog_worker(stop: threading.Event) -> None:
    """Pure-Python work on a background thread (a metrics aggregator gone wrong): it holds the GIL, so the loop
    thread waits up to ``sys.getswitchinterval()`` every time it wants to run."""
    x = 0
    while not stop.is_set():
        for i in range(10_000):
            x = (x * 31 + i) % 1_000_003


def _start_gil_hogs(truth: FrontendTruth, count: int, stop: threading.Event) -> None:
    ready: list[int] = []
    got = threading.Event()

    def run() -> None:
        ready.append(threading.get_native_id())
        got.set()
        gil_hog_worker(stop)

    for n in range(count):
        got.clear()
        threading.Thread(target=run, name=f"gil-hog-{n}", daemon=True).start()
        got.wait(5)
    truth.hog_tids = ready


def make_cyclic_garbage(n: int) -> None:
    """Allocate n small objects in reference cycles and drop them: only the cyclic GC can free them."""
    for _ in range(n // 2):
        a: dict[str, object] = {}
        b: dict[str, object] = {"a": a}
        a["b"] = b


def install(settings: StackSettings, truth: FrontendTruth, stop: threading.Event) -> None:
    """Start the pathologies the settings ask for; call on the event-loop thread."""
    if settings.block_ms > 0:
        _schedule_blocks(asyncio.get_running_loop(), truth, settings.block_every_ms / 1000, settings.block_ms / 1000)
    if settings.gil_hog_threads:
        _start_gil_hogs(truth, settings.gil_hog_threads, stop)
    if settings.gc_live_objects:
        _live_heap[:] = [{"i": i} for i in range(settings.gc_live_objects)]
