"""Which side is the bottleneck: a pure function from the measured sections to a :class:`Verdict`.

The rule is the one for any pipeline: the stage at capacity while the other waits is the bottleneck. The
frontend is at capacity when its event loop is saturated (busy share near 1, or requests wait on it: lag), the
engine when it never waits for input (busy share near 1, a backed-up queue, a pegged GPU). Thresholds start
from Clinic.js Doctor's rules (delay median >= 10 ms or max >= 100 ms; utilisation >= 95%) and were tuned on the
example stack's planted scenarios (see docs/benchmarks.md); they live here, named, in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from loopprof.integrations import vllm
from loopprof.integrations.vllm import KNOBS
from loopprof.report import Engine, Frontend, ProcessInfo, SamplerHealth, Tokenization, Verdict

# Saturation thresholds (fractions of wall time, milliseconds).
LOOP_SATURATED = 0.90
LOOP_HEADROOM = 0.70
LAG_P50_BLOCKING_MS = 10.0
LAG_P99_BLOCKING_MS = 100.0
REPEATED_STALLS = 3  # a stall of LAG_P99_BLOCKING_MS or more seen this often marks a blocked loop
ENGINE_SATURATED = 0.90
ENGINE_HEADROOM = 0.70
GPU_SATURATED = 0.90
WAITING_BACKLOG = 1.0  # requests waiting in the engine's queue on average
GC_HEAVY = 0.05  # share of wall time in GC pauses
TOKENIZE_ON_LOOP_HEAVY = 0.10  # share of wall time the loop spends tokenizing
GIL_CONTENDED = 0.20
GIL_SECOND_HOLDER = 0.10  # a thread holding the GIL this share of the time competes with the loop
SAMPLER_LATE_LIMIT = 0.25
KV_CACHE_ROOM = 0.80  # below this KV-cache usage a larger batch cap fits
ENCODE_OPERATIONS = ("encode", "tokenize", "chat_template")
DETOKENIZE_OPERATIONS = ("detokenize", "decode")


@dataclass(frozen=True)
class ServerContext:
    """What kind of server this is, so advice can name its own knobs."""

    vllm: bool = False
    rust_frontend: bool = False
    frontend_processes: int = 1

    @classmethod
    def of(cls, processes: Iterable[ProcessInfo], frontend_processes: int) -> ServerContext:
        """Recognise the server from its processes (vLLM's titles and command lines, the Rust frontend binary)."""
        procs = list(processes)
        return cls(
            vllm=vllm.is_vllm(p.cmdline for p in procs),
            rust_frontend=any(vllm.is_rust_frontend(p) for p in procs),
            frontend_processes=max(1, frontend_processes),
        )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.0f}%"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} ms"


def frontend_pressure(frontend: Frontend) -> tuple[float | None, float | None, list[str]]:
    """How close the frontend is to capacity (busy share) and how much it blocks requests (lag, stalls).

    Two scores, because they mean different things: a loop busy near 100% of the time cannot take more work; a
    loop that stalls now and then makes requests wait without being full. Each is 1.0 at its threshold.
    """
    loop = frontend.loop
    capacity = None if loop.busy_fraction is None else loop.busy_fraction / LOOP_SATURATED
    evidence: list[str] = []
    if loop.busy_fraction is not None:
        evidence.append(f"event loop busy {_pct(loop.busy_fraction)} of the time")
    blocking: list[float] = []
    lag = loop.lag_ms
    if lag.p50 is not None:
        blocking.append(lag.p50 / LAG_P50_BLOCKING_MS)
        evidence.append(f"loop lag p50 {_ms(lag.p50)}, p99 {_ms(lag.p99)}")
    if lag.p99 is not None:
        blocking.append(lag.p99 / LAG_P99_BLOCKING_MS)
    # Clinic's "max delay >= 100 ms", made robust: one long pause may be a fluke, repeated ones block every request.
    repeated = [cb for cb in loop.slow_callbacks if cb.count >= REPEATED_STALLS and cb.max_ms >= LAG_P99_BLOCKING_MS]
    if repeated:
        worst = max(repeated, key=lambda cb: cb.max_ms)
        blocking.append(worst.max_ms / LAG_P99_BLOCKING_MS)
        evidence.append(f"the loop stalled {worst.count} times, up to {worst.max_ms:.0f} ms, in {worst.where}")
    return capacity, (max(blocking) if blocking else None), evidence


def engine_pressure(engine: Engine, frontend_saturated: bool = False) -> tuple[float | None, list[str]]:
    """A 0..1+ score of how close the engine is to capacity, with the evidence behind it.

    A batching engine's own queue is the first capacity signal: a backlog means it cannot take work as fast as it
    arrives. An empty queue does not prove headroom (an engine whose step time grows with its batch saturates
    without ever filling it), so the busy share still counts then, but only when the frontend has headroom: an
    engine that a saturated frontend feeds steps whenever any request runs, and its busy share shows activity,
    not capacity (vLLM's EngineCore was busy 94% of the time with 3 of 256 slots in use).
    """
    evidence: list[str] = []
    activity = [
        v / limit
        for v, limit in ((engine.busy_fraction, ENGINE_SATURATED), (engine.gpu_utilization, GPU_SATURATED))
        if v is not None
    ]
    if engine.busy_fraction is not None:
        evidence.append(f"engine busy {_pct(engine.busy_fraction)} of the time")
    if engine.gpu_utilization is not None:
        evidence.append(f"GPU utilization {_pct(engine.gpu_utilization)}")
    if engine.waiting_requests is not None:
        evidence.append(f"{engine.waiting_requests:.1f} requests waiting in the engine queue on average")
        backlog = engine.waiting_requests / WAITING_BACKLOG
        if backlog >= 1.0 or frontend_saturated or not activity:
            return backlog, evidence
        return max(backlog, *activity), evidence
    return (max(activity) if activity else None), evidence


def decide(
    frontend: Frontend,
    engine: Engine,
    sampler: SamplerHealth | None = None,
    context: ServerContext | None = None,
) -> Verdict:
    """Classify the window. ``inconclusive`` whenever the data cannot carry a verdict, with the reason."""
    ctx = context or ServerContext()
    if ctx.rust_frontend:
        return Verdict(
            "inconclusive",
            0.0,
            ["the API server is not a Python process (Rust frontend): loopprof's loop/GIL/GC signals do not apply"],
            ["profile the engine with its own metrics (vLLM /metrics, nvidia-smi)"],
        )
    if sampler is not None:
        if sampler.late_fraction is not None and sampler.late_fraction > SAMPLER_LATE_LIMIT:
            return Verdict(
                "inconclusive",
                0.0,
                [f"the sampler fell behind on {_pct(sampler.late_fraction)} of its samples"],
                ["lower --rate or give the profiler a free core, then profile again"],
            )
        if sampler.samples == 0:
            reason = "; ".join(sampler.errors) if sampler.errors else "no samples were collected"
            return Verdict("inconclusive", 0.0, [reason], ["profile for longer, under load"])

    f_capacity, f_blocking, f_evidence = frontend_pressure(frontend)
    e_score, e_evidence = engine_pressure(engine, frontend_saturated=f_capacity is not None and f_capacity >= 1.0)
    # A loop that stalls makes the frontend the bottleneck only while the engine has headroom: when the engine
    # never waits, throughput is the engine's and the stalls are latency to fix on the side (see advice).
    engine_at_capacity = e_score is not None and e_score >= 1.0
    f_parts = [f_capacity] if engine_at_capacity else [f_capacity, f_blocking]
    f_known = [x for x in f_parts if x is not None]
    f_score = max(f_known) if f_known else (None if f_blocking is None else 0.0)
    if f_score is None:
        return Verdict(
            "inconclusive",
            0.0,
            ["no event-loop signal from the frontend", *e_evidence],
            ["check that the target runs an asyncio/uvloop event loop and that loopprof can read it"],
        )

    f_sat = f_score >= 1.0
    f_free = not f_sat and (frontend.loop.busy_fraction or 0.0) < LOOP_HEADROOM
    if e_score is None:
        e_sat, e_free = False, None
    else:
        e_sat = e_score >= 1.0
        e_free = e_score < ENGINE_HEADROOM / ENGINE_SATURATED

    reasons = [*f_evidence, *e_evidence]
    if e_score is None:
        reasons.append("engine not observed (no engine process, metrics URL or GPU found)")
    if f_sat and e_sat:
        bottleneck = "both"
        confidence = min(f_score, e_score or 0.0, 1.2) / 1.2
    elif f_sat:
        bottleneck = "frontend"
        # Without an engine signal we know the loop is saturated but not that the engine waits.
        confidence = _confidence(f_score, e_score, e_free)
    elif e_sat:
        bottleneck = "engine"
        confidence = _confidence(e_score or 0.0, f_score, f_free)
    elif e_score is None:
        return Verdict("inconclusive", 0.2, reasons, ["give loopprof the engine: --engine PID or --metrics-url"])
    elif f_free and e_free:
        bottleneck = "neither"
        confidence = min(1.0, 1.0 - max(f_score, e_score) + 0.3)
    else:
        # Both are busy but neither at capacity: the nearer one is where capacity will run out first.
        bottleneck = "frontend" if f_score >= e_score else "engine"
        confidence = 0.35
    verdict = Verdict(bottleneck, round(max(0.0, min(1.0, confidence)), 2), reasons, [])
    verdict.advice = advise(verdict.bottleneck, frontend, engine, ctx)
    return verdict


def _confidence(own: float, other: float | None, other_has_headroom: bool | None) -> float:
    base = 0.55 + 0.35 * min(1.0, (own - 1.0) / 0.1 + 0.5)
    if other is None:
        return min(base, 0.6)
    if other_has_headroom:
        return base + 0.1
    return base - 0.15


def _share_of_wall(tok: Tokenization, ops: tuple[str, ...], key: str = "total_ms") -> float | None:
    """Share of wall time the named tokenization operations took (``on_loop_ms`` for the loop's part)."""
    present = [tok.by_operation[op] for op in ops if op in tok.by_operation]
    if not present or tok.total_ms is None or not tok.time_fraction or tok.total_ms <= 0:
        return None
    wall_ms = tok.total_ms / tok.time_fraction
    return sum(float(stats.get(key, 0.0)) for stats in present) / wall_ms


def _tokenize_advice(tok: Tokenization, ctx: ServerContext) -> list[str]:
    if ctx.vllm:  # vLLM tokenizes and renders chat templates on its renderer thread pool already
        share = _share_of_wall(tok, ENCODE_OPERATIONS)
        if share is not None and share >= TOKENIZE_ON_LOOP_HEAVY:
            return [
                f"tokenization and chat templates take {_pct(share)} of wall time: give vLLM's renderer pool more "
                f"threads with `{KNOBS['renderer_workers']}`"
            ]
        return []
    on_loop = _share_of_wall(tok, ENCODE_OPERATIONS, "on_loop_ms")
    if on_loop is None and tok.time_fraction is not None and tok.on_loop_fraction is not None:
        on_loop = tok.time_fraction * tok.on_loop_fraction  # no per-operation split: all of it
    if on_loop is not None and on_loop >= TOKENIZE_ON_LOOP_HEAVY:
        return [f"tokenization takes {_pct(on_loop)} of the event loop: move it off the loop into a thread pool"]
    return []


def advise(bottleneck: str, frontend: Frontend, engine: Engine, ctx: ServerContext) -> list[str]:
    """Concrete next steps, naming vLLM's own knobs (as the installed release spells them) when it is vLLM."""
    out: list[str] = []
    tok, gc, gil, loop = frontend.tokenization, frontend.gc, frontend.gil, frontend.loop
    if bottleneck in ("frontend", "both"):
        if ctx.vllm:
            n = max(2, ctx.frontend_processes * 2)
            out.append(
                f"scale the Python frontend out: `{KNOBS['frontend_processes']} {n}` (one event loop per process), "
                f"or try the Rust frontend with `{KNOBS['rust_frontend']}`"
            )
        else:
            out.append("run more API-server processes (e.g. uvicorn/gunicorn `--workers`) so one loop is not saturated")
        out.extend(_tokenize_advice(tok, ctx))
        detok = _share_of_wall(tok, DETOKENIZE_OPERATIONS, "on_loop_ms")
        if ctx.vllm and detok is not None and detok >= TOKENIZE_ON_LOOP_HEAVY:
            out.append(
                f"detokenization takes {_pct(detok)} of the event loop: lower `{KNOBS['output_chunk']}` so the "
                "output handler yields to the loop more often under many streams"
            )
    if loop.slow_callbacks:
        top = max(loop.slow_callbacks, key=lambda s: s.max_ms)
        if bottleneck in ("frontend", "both") or top.max_ms >= LAG_P99_BLOCKING_MS:
            out.append(f"the loop was blocked up to {top.max_ms:.0f} ms in {top.where}: move that work off the loop")
    if gc.time_fraction is not None and gc.time_fraction >= GC_HEAVY:
        evidence = f"GC pauses take {_pct(gc.time_fraction)} of wall time (max {_ms(gc.pause_ms.max)})"
        if ctx.vllm:  # vLLM already calls gc.freeze() after start-up
            out.append(f"{evidence}: raise thresholds with `gc.set_threshold(...)`; `{KNOBS['gc_debug']}` shows why")
        else:
            out.append(f"{evidence}: call `gc.freeze()` after start-up and raise `gc.set_threshold(...)`")
    # Contention matters when a second thread holds the GIL too; a lone saturated loop is covered above.
    busy_holders = [h for h in gil.holders if h.fraction >= GIL_SECOND_HOLDER]
    if gil.contention is not None and gil.contention >= GIL_CONTENDED and len(busy_holders) >= 2:
        out.append(
            f"threads wait for the GIL {_pct(gil.contention)} of the time: move CPU-bound Python work to processes"
        )
    if bottleneck in ("engine", "both"):
        if ctx.vllm:
            room = engine.kv_cache_usage is not None and engine.kv_cache_usage < KV_CACHE_ROOM
            batch = (
                f"raise `{KNOBS['batch_cap']}`: KV-cache usage is {_pct(engine.kv_cache_usage)}, so there is room"
                if room
                else "add GPU capacity (data/tensor parallel replicas)"
            )
            out.append(f"the engine is at capacity; more API-server processes will not help: {batch}")
        else:
            out.append("the engine is at capacity: scale the engine (more GPUs or replicas); the frontend has headroom")
    if bottleneck == "neither":
        out.append("neither side is at capacity: the server is underloaded; profile again at peak load")
    return out
