"""Named scenarios: stack settings + load that put the stack in a known state, and the ground-truth claims
that state must satisfy (checked by tests/examples against ``/debug/groundtruth``).

Data only. ``expected_bottleneck`` is the loopprof verdict the scenario should get (contract values).
Claims are ``(metric, op, bound)`` over :func:`examples.stack.groundtruth.window`'s keys.
Sized for a 2-core machine: the engine's busy-wait spins one core while it steps.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from examples.loadgen import LoadSettings
from examples.stack.settings import StackSettings

Claim = tuple[str, str, float]
_OPS = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    stack: StackSettings
    load: LoadSettings | None  # None: no load (idle)
    claims: tuple[Claim, ...]
    expected_bottleneck: str
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, truth: dict[str, Any]) -> list[str]:
        """The claims a ground-truth window breaks, each as one readable line (empty: all hold)."""
        broken = []
        for metric, op, bound in self.claims:
            value = truth.get(metric)
            if value is None or not _OPS[op](value, bound):
                broken.append(f"{self.name}: {metric} = {value!r}, expected {op} {bound}")
        return broken


def _s(name: str, **kw: Any) -> StackSettings:
    return StackSettings(scenario=name, **kw)


def _load(**kw: Any) -> LoadSettings:
    base: dict[str, Any] = {"duration_s": 8.0, "max_requests": 5000}
    base.update(kw)
    return LoadSettings(**base)


_LIST = [
    Scenario(
        "idle",
        "No load: the loop and the engine both wait.",
        _s("idle"),
        None,
        (("loop_busy", "<", 0.10), ("engine_busy", "<", 0.05)),
        "neither",
    ),
    Scenario(
        "engine_bound",
        "Expensive engine steps, a full batch and a queue: the engine never waits, the frontend idles.",
        _s("engine_bound", step_ms=40.0, per_seq_ms=0.5, max_num_seqs=8),
        _load(concurrency=16, prompt_tokens=128, output_tokens=16, stream=True),
        (("engine_busy", ">", 0.90), ("loop_busy", "<", 0.50), ("engine_mean_waiting", ">=", 1.0)),
        "engine",
    ),
    Scenario(
        "frontend_bound",
        "Cheap engine steps, many streaming clients, long prompts tokenized on the loop: the loop saturates "
        "while the engine waits for work.",
        _s("frontend_bound", step_ms=0.3, per_seq_ms=0.01, tokenize_on="loop"),
        _load(concurrency=64, prompt_tokens=1500, output_tokens=8, stream=True),
        (("loop_busy", ">", 0.90), ("engine_busy", "<", 0.50)),
        "frontend",
    ),
    Scenario(
        "loop_block",
        "A callback blocks the event loop for 120 ms every 400 ms under light load.",
        _s("loop_block", step_ms=0.3, block_every_ms=400.0, block_ms=120.0),
        _load(concurrency=1, prompt_tokens=64, output_tokens=4, stream=True),
        (
            ("block_max_ms", ">=", 110.0),
            ("block_fraction", ">", 0.15),
            ("lag_max_ms", ">=", 80.0),
            ("engine_busy", "<", 0.50),
        ),
        "frontend",
    ),
    Scenario(
        "gil_hog",
        "A background thread spins in pure Python holding the GIL; the loop waits for it on every wake-up.",
        _s("gil_hog", step_ms=0.3, gil_hog_threads=1),
        _load(concurrency=2, prompt_tokens=64, output_tokens=4, stream=True),
        (("gil_hog_fraction", ">", 0.40), ("engine_busy", "<", 0.50)),
        "frontend",
    ),
    Scenario(
        "gc_heavy",
        "Every request drops cyclic garbage over a large live heap: frequent, long GC pauses on the loop.",
        _s("gc_heavy", step_ms=0.5, gc_garbage_per_request=60000, gc_live_objects=1_000_000),
        _load(concurrency=8, prompt_tokens=64, output_tokens=8, stream=True),
        (("gc_time_fraction", ">", 0.10), ("gc_collections", ">", 20), ("engine_busy", "<", 0.50)),
        "frontend",
    ),
    Scenario(
        "tokenize_heavy",
        "Very long prompts tokenized on the event loop: tokenization dominates the loop's time.",
        _s("tokenize_heavy", step_ms=1.0, tokenize_on="loop"),
        _load(concurrency=8, prompt_tokens=6000, output_tokens=4, stream=False),
        (("tokenize_on_loop_fraction", ">", 0.30), ("engine_busy", "<", 0.50)),
        "frontend",
    ),
    Scenario(
        "multi_frontend",
        "Two API-server processes share the port and one engine (vLLM's --api-server-count 2); the engine is "
        "the limit, both loops have headroom and both serve requests.",
        _s("multi_frontend", api_server_count=2, step_ms=20.0, per_seq_ms=0.5, max_num_seqs=8),
        _load(concurrency=16, prompt_tokens=128, output_tokens=16, stream=True),
        (
            ("frontend_count", ">=", 2),
            ("frontends_serving", ">=", 2),
            ("engine_busy", ">", 0.90),
            ("loop_busy", "<", 0.50),
        ),
        "engine",
    ),
]

SCENARIOS: dict[str, Scenario] = {s.name: s for s in _LIST}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}") from None
