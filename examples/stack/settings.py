"""Every knob of the stack in one frozen dataclass, and the argparse flags generated from it.

The flags use vLLM's names where vLLM has the knob (``--max-num-seqs``, ``--api-server-count``); the
pathology knobs exist only here, to plant a known bottleneck.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StackSettings:
    """What the stack runs like. Times are milliseconds."""

    model: str = "loopprof-mini"
    host: str = "127.0.0.1"
    port: int = 8000
    api_server_count: int = 1
    scenario: str = "custom"
    # Engine (simulated GPU): each step busy-waits step_ms + per_seq_ms * batch + prefill for new prompts.
    max_num_seqs: int = 64
    step_ms: float = 5.0
    per_seq_ms: float = 0.02
    prefill_ms_per_1k_tokens: float = 0.5
    kv_capacity_tokens: int = 262144
    # Frontend.
    loop: str = "uvloop"  # uvloop (as vLLM) | asyncio
    tokenize_on: str = "executor"  # executor (one thread) | loop
    vocab_size: int = 8000
    # Pathologies (0 = off).
    block_every_ms: float = 0.0
    block_ms: float = 0.0
    gil_hog_threads: int = 0
    gc_garbage_per_request: int = 0
    gc_live_objects: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StackSettings:
        return cls(**json.loads(text))

    def validate(self) -> None:
        """Raise ValueError with a one-line fix for settings that cannot run."""
        if self.loop not in ("uvloop", "asyncio"):
            raise ValueError(f"--loop must be uvloop or asyncio, not {self.loop!r}")
        if self.tokenize_on not in ("executor", "loop"):
            raise ValueError(f"--tokenize-on must be executor or loop, not {self.tokenize_on!r}")
        if self.api_server_count < 1 or self.max_num_seqs < 1:
            raise ValueError("--api-server-count and --max-num-seqs must be at least 1")
        if self.block_ms > 0 and self.block_every_ms <= 0:
            raise ValueError("--block-ms needs --block-every-ms > 0")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, cls: type = StackSettings, skip: tuple[str, ...] = ()) -> None:
    """One optional flag per field of a flat dataclass; unset flags stay None so a scenario's values survive."""
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        kind = str(field.type)
        if kind == "bool":
            parser.add_argument(_flag(field.name), dest=field.name, action=argparse.BooleanOptionalAction)
            continue
        conv = {"int": int, "float": float, "str": str}[kind]
        parser.add_argument(_flag(field.name), dest=field.name, type=conv, default=None, metavar=kind.upper())


def overrides_from_args(args: argparse.Namespace, cls: type = StackSettings) -> dict[str, Any]:
    return {f.name: v for f in dataclasses.fields(cls) if (v := getattr(args, f.name, None)) is not None}


def to_flags(overrides: dict[str, Any]) -> list[str]:
    """The inverse of add_flags for StackSettings, for starting the stack as a subprocess."""
    names = {f.name for f in dataclasses.fields(StackSettings)}
    argv: list[str] = []
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"unknown stack setting {key!r}; choose from {sorted(names)}")
        argv += [_flag(key), str(value)]
    return argv
