"""The JSON report of one profiling window, schema ``loopprof.report/1`` (see CONTRACT.md §2).

Plain dataclasses so that every producer (embedded agent, ``attach``, ``run``) fills the same model and every
consumer (renderers, exporters, ``loopprof report``) reads the same model. ``None`` means "not measured" and is
written as JSON ``null``; a made-up 0 is never written. Fields beyond the contract are allowed (added, never
renamed); they are marked "extra" below.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

SCHEMA = "loopprof.report/1"

Source = Literal["attach", "run", "embedded"]
Role = Literal["frontend", "engine", "other"]
Bottleneck = Literal["frontend", "engine", "both", "neither", "inconclusive"]
BOTTLENECKS: tuple[str, ...] = get_args(Bottleneck)


class ReportError(Exception):
    """A report file that cannot be read; the message is one line that says what to do."""


@dataclass
class Percentiles:
    """Latency percentiles in milliseconds."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None


@dataclass
class SlowCallback:
    where: str  # "module:function:line"
    count: int
    max_ms: float


@dataclass
class Loop:
    busy_fraction: float | None = None
    lag_ms: Percentiles = field(default_factory=Percentiles)
    slow_callbacks: list[SlowCallback] = field(default_factory=list)
    # extra: how each number was produced, so a reader can judge it
    busy_method: str | None = None  # "selector_timing" | "syscall_sampling" | "thread_cpu" | "pyspy_samples"
    lag_method: str | None = None  # "timer_probe" | "busy_stretch_estimate"
    lag_is_estimate: bool = False
    loop_kind: str | None = None  # "asyncio" | "uvloop" | None when unknown
    note: str | None = None  # why a value is null, when it is


@dataclass
class GilHolder:
    thread: str
    fraction: float


@dataclass
class Gil:
    held_fraction: float | None = None
    contention: float | None = None
    holders: list[GilHolder] = field(default_factory=list)
    # extra
    held_method: str | None = None
    contention_method: str | None = None
    note: str | None = None  # why a value is null, when it is


@dataclass
class GcPause:
    total: float | None = None
    p99: float | None = None
    max: float | None = None


@dataclass
class Gc:
    collections: int | None = None
    pause_ms: GcPause = field(default_factory=GcPause)
    time_fraction: float | None = None
    # extra
    collections_by_generation: list[int] | None = None
    method: str | None = None  # "gc_callbacks" | "native_frames"


@dataclass
class Tokenization:
    calls: int | None = None
    total_ms: float | None = None
    time_fraction: float | None = None
    on_loop_fraction: float | None = None
    # extra: per operation ("encode", "decode", "chat_template", "detokenize", ...): calls, total_ms, on_loop_ms
    by_operation: dict[str, dict[str, float]] = field(default_factory=dict)
    method: str | None = None  # "instrumented" | "pyspy_frames"


@dataclass
class Requests:
    """Extra: what the ASGI middleware or a load generator saw per request."""

    count: int | None = None
    in_flight_max: int | None = None
    ttfb_ms: Percentiles = field(default_factory=Percentiles)


@dataclass
class Frontend:
    loop: Loop = field(default_factory=Loop)
    gil: Gil = field(default_factory=Gil)
    gc: Gc = field(default_factory=Gc)
    tokenization: Tokenization = field(default_factory=Tokenization)
    # extra
    pid: int | None = None
    requests: Requests = field(default_factory=Requests)


@dataclass
class Engine:
    busy_fraction: float | None = None
    gpu_utilization: float | None = None
    waiting_requests: float | None = None
    signals: list[str] = field(default_factory=list)  # "nvml" | "metrics" | "samples" | "process_cpu"
    # extra
    running_requests: float | None = None
    kv_cache_usage: float | None = None
    method: str | None = None
    pids: list[int] = field(default_factory=list)


@dataclass
class Verdict:
    bottleneck: Bottleneck = "inconclusive"
    confidence: float = 0.0
    reasons: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)


@dataclass
class ProcessInfo:
    pid: int
    role: Role
    cmdline: str
    cpu_fraction: float | None = None


@dataclass
class Target:
    pid: int | None = None
    python: str | None = None
    processes: list[ProcessInfo] = field(default_factory=list)


@dataclass
class SamplerHealth:
    """Extra: how well the sampler itself did; a late or denied sampler makes the verdict inconclusive."""

    samples: int | None = None
    expected_samples: int | None = None
    late_fraction: float | None = None
    errors: list[str] = field(default_factory=list)
    overhead_cpu_fraction: float | None = None


@dataclass
class Report:
    source: Source
    started_at: str
    duration_s: float
    target: Target = field(default_factory=Target)
    frontend: Frontend = field(default_factory=Frontend)
    engine: Engine = field(default_factory=Engine)
    verdict: Verdict = field(default_factory=Verdict)
    schema: str = SCHEMA
    # extra
    frontends: list[Frontend] = field(default_factory=list)  # one per frontend process when there are several
    sampler: SamplerHealth = field(default_factory=SamplerHealth)
    notes: list[str] = field(default_factory=list)
    partial: bool = False  # the target exited or the window was cut short

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        ordered = {"schema": data.pop("schema")}
        ordered.update(data)
        return _finite(ordered)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def write(self, path: str | Path) -> None:
        """Write atomically so a reader never sees half a report."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        tmp.replace(target)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        if not isinstance(data, dict):
            raise ReportError("not a loopprof report: the top level is not a JSON object")
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ReportError(
                f"unsupported report schema {schema!r} (this loopprof reads {SCHEMA!r}); "
                "re-create it with this version of loopprof"
            )
        try:
            return _build(cls, data)
        except (TypeError, ValueError, KeyError) as exc:
            raise ReportError(f"malformed {SCHEMA} report: {exc}") from None


def load_report(path: str | Path) -> Report:
    """Read a saved report, turning every failure into a one-line :class:`ReportError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"no such report file: {p} (write one with `loopprof attach PID --json {p}`)") from None
    except IsADirectoryError:
        raise ReportError(f"{p} is a directory, not a report file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read {p}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{p} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    try:
        return Report.from_dict(data)
    except ReportError as exc:
        raise ReportError(f"{p}: {exc}") from None


def _finite(value: Any) -> Any:
    """NaN or infinity would be a made-up number; write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


T = TypeVar("T")


def _build(cls: type[T], data: Any) -> T:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} must be an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], f.name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = get_origin(hint)
    args = get_args(hint)
    if value is None:
        return None
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{name} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (list,):
        if not isinstance(value, list):
            raise TypeError(f"{name} must be a list")
        return [_coerce(args[0], v, name) for v in value]
    if origin in (dict,):
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be an object")
        return value
    if args and type(None) in args:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, name)
    if is_dataclass(hint):
        return _build(hint, value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r}")
        return value
    if hint is bool:
        return bool(value)
    return value
