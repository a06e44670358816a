"""``python -m benchmarks.bench_scenarios``: the proving ground's numbers, measured on this machine.

1. Every named scenario against its ground-truth claims (examples/scenarios.py).
2. The core finding in miniature: the ``frontend_bound`` load at growing concurrency, with a cheap engine step
   (throughput stops growing, the loop's busy share goes to ~1, the engine waits) and with a raised step cost
   (the engine saturates instead, the loop keeps headroom).
3. How long the stack takes to become ready, tokenizer cache cold and warm.

Writes a markdown report (default docs/benchmarks-scenarios.md). ``--loopprof`` fills the verdict column by
running ``loopprof attach`` on the API server during each row's load. About 3–4 minutes without ``--loopprof``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.harness import REPO_ROOT, StackHandle, running_stack
from examples.loadgen import LoadResult, run_load
from examples.profile import profile_pid
from examples.scenarios import SCENARIOS, Scenario
from examples.stack.settings import StackSettings
from examples.stack.tokenizer import tokenizer_path, train_tokenizer

CONCURRENCIES = (1, 4, 16, 64)
# Engine cost per step: cheap (a fast GPU) vs raised (GPU time grows with the batch, so batching cannot hide it).
ENGINE_COSTS: dict[str, dict[str, float]] = {
    "cheap engine step (0.3 ms + 0.01 ms/seq)": {"step_ms": 0.3, "per_seq_ms": 0.01},
    "raised engine step (10 ms + 5 ms/seq)": {"step_ms": 10.0, "per_seq_ms": 5.0},
}
PROFILE_DELAY_S = 1.0  # let the load reach steady state before loopprof's window opens

# The verdict hook: (stack, seconds) -> loopprof's bottleneck, or None. Set by --loopprof; the lead may swap in
# an in-process call.
VerdictHook = Callable[[StackHandle, float], "str | None"]


def loopprof_verdict(stack: StackHandle, seconds: float) -> str | None:
    outcome = profile_pid(stack.pid, seconds, stack.base_url + "/metrics")
    if not outcome.available:
        print(f"  loopprof: {outcome.output}", file=sys.stderr)
    return outcome.bottleneck


@dataclass
class Row:
    label: str
    concurrency: int
    load: LoadResult
    truth: dict[str, Any]
    verdict: str | None


def measure(stack: StackHandle, sc: Scenario, concurrency: int, seconds: float, hook: VerdictHook | None) -> Row:
    """One load run; with a hook, loopprof profiles the middle of it while the ground truth covers all of it."""
    assert sc.load is not None
    load = dataclasses.replace(sc.load, port=stack.port, concurrency=concurrency, duration_s=seconds)
    verdict: list[str | None] = [None]

    def profile() -> None:
        time.sleep(PROFILE_DELAY_S)
        verdict[0] = hook(stack, max(1.0, seconds - 2 * PROFILE_DELAY_S)) if hook else None

    profiler = threading.Thread(target=profile, daemon=True)
    before = stack.groundtruth()
    profiler.start()
    result = run_load(load)
    truth = stack.window(before)
    profiler.join(timeout=120)
    return Row(f"{sc.name}", concurrency, result, truth, verdict[0])


def sweep(seconds: float, hook: VerdictHook | None) -> dict[str, list[Row]]:
    base = SCENARIOS["frontend_bound"]
    out: dict[str, list[Row]] = {}
    for label, costs in ENGINE_COSTS.items():
        rows = []
        with running_stack(base, **costs) as stack:
            for c in CONCURRENCIES:
                row = measure(stack, base, c, seconds, hook)
                print(f"  {label}, concurrency {c}: {row.load.summary()}", file=sys.stderr)
                rows.append(row)
        out[label] = rows
    return out


def scenario_runs(hook: VerdictHook | None) -> list[tuple[Scenario, dict[str, Any], LoadResult | None, str | None]]:
    runs = []
    for sc in SCENARIOS.values():
        with running_stack(sc) as stack:
            if sc.load is None or hook is None:
                truth, load = stack.drive()
                verdict = None
            else:
                row = measure(stack, sc, sc.load.concurrency, sc.load.duration_s, hook)
                truth, load, verdict = row.truth, row.load, row.verdict
        print(f"  {sc.name}: broken claims {sc.check(truth)}", file=sys.stderr)
        runs.append((sc, truth, load, verdict))
    return runs


def readiness() -> dict[str, float]:
    """Seconds from start to every API server answering, with a cold tokenizer cache and then a warm one."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        old = os.environ.get("LOOPPROF_EXAMPLES_CACHE")
        os.environ["LOOPPROF_EXAMPLES_CACHE"] = cache
        try:
            t0 = time.perf_counter()
            train_tokenizer(StackSettings().vocab_size)
            out["tokenizer training alone (in-process, part of a cold start)"] = time.perf_counter() - t0
            tokenizer_path(StackSettings().vocab_size).unlink()
            for label in ("cold cache (trains the tokenizer)", "warm cache"):
                with running_stack("idle") as stack:
                    out[label] = stack.ready_s
            with running_stack("multi_frontend") as stack:
                out["warm cache, --api-server-count 2"] = stack.ready_s
        finally:
            if old is None:
                del os.environ["LOOPPROF_EXAMPLES_CACHE"]
            else:
                os.environ["LOOPPROF_EXAMPLES_CACHE"] = old
    return out


# --- markdown ----------------------------------------------------------------------------------------------


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _claims(sc: Scenario, truth: dict[str, Any]) -> str:
    return "; ".join(f"{m} {_f(truth.get(m))} ({op} {b:g})" for m, op, b in sc.claims)


def reading(rows: list[Row]) -> str:
    """One sentence stating what the measured rows show, computed from them (so it cannot drift from the table)."""
    first, last = rows[0], rows[-1]
    rps = [r.load.req_per_s or 0.0 for r in rows]
    growth = rps[-1] / rps[0] if rps[0] else float("nan")
    busiest = next((r.concurrency for r in rows if (r.truth["loop_busy"] or 0) >= 0.9), None)
    loop = f"the loop is ≥ 90% busy from concurrency {busiest}" if busiest else "the loop never reaches 90% busy"
    return (
        f"Concurrency ×{last.concurrency // first.concurrency} → throughput ×{growth:.1f} "
        f"({rps[0]:.0f} → {rps[-1]:.0f} req/s) and TTFT p50 {_f(first.load.ttft_ms_p50, '.0f')} → "
        f"{_f(last.load.ttft_ms_p50, '.0f')} ms; {loop}; engine busy {_f(first.truth['engine_busy'])} → "
        f"{_f(last.truth['engine_busy'])}."
    )


SWEEP_HEAD = (
    "| concurrency | req/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | loop busy | engine busy | engine mean batch "
    "| loopprof verdict |"
)


def render(sweeps: dict[str, list[Row]], runs: list[Any], ready: dict[str, float], seconds: float) -> str:
    lines = [
        "# Proving-ground benchmarks (examples/ stack)",
        "",
        f"Measured by `python -m benchmarks.bench_scenarios`: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        "The machine was shared with other work, so expect noise of a few percent on every share.",
        "",
        "Ground truth is the stack's own measurement (`GET /debug/groundtruth`): **loop busy** = on-CPU + run-queue "
        "time of the API server's event-loop thread (kernel schedstat) over wall time; **engine busy** = wall time "
        "the EngineCore was not blocked in its input poll (its own step timers). The verdict column is loopprof's "
        "(`--loopprof`; `—` when not run).",
        "",
        "## Concurrency sweep: the core finding in miniature",
        "",
        f"Load: the `frontend_bound` scenario's requests (streaming, ~1500-token prompts tokenized on the loop, "
        f"8 output tokens), {seconds:g} s per row.",
        "",
    ]
    for label, rows in sweeps.items():
        lines += [f"### {label}", "", reading(rows), "", SWEEP_HEAD, "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            t = r.truth
            lines.append(
                f"| {r.concurrency} | {_f(r.load.req_per_s, '.1f')} | {_f(r.load.ttft_ms_p50, '.0f')} | "
                f"{_f(r.load.ttft_ms_p99, '.0f')} | {_f(r.load.itl_ms_p50, '.1f')} | {_f(t['loop_busy'])} | "
                f"{_f(t['engine_busy'])} | {_f(t['engine_mean_batch'], '.1f')} | {r.verdict or '—'} |"
            )
        lines.append("")
    lines += ["## Scenarios against their claims", "",
              "| scenario | claims (measured, bound) | all hold | req/s | loop busy | engine busy | expected verdict | "
              "loopprof verdict |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for sc, truth, load, verdict in runs:
        ok = "yes" if not sc.check(truth) else "**no**"
        rps = _f(load.req_per_s, ".1f") if load else "—"
        lines.append(
            f"| {sc.name} | {_claims(sc, truth)} | {ok} | {rps} | {_f(truth['loop_busy'])} | "
            f"{_f(truth['engine_busy'])} | {sc.expected_bottleneck} | {verdict or '—'} |"
        )
    lines += ["", "## Time to ready", "", "| start | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in ready.items()]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scenarios", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks-scenarios.md"))
    parser.add_argument("--seconds", type=float, default=6.0, help="load per sweep row (default 6)")
    parser.add_argument("--loopprof", action="store_true", help="fill the verdict column with loopprof attach")
    parser.add_argument("--only", choices=("sweep", "scenarios", "ready"), help="run one part")
    args = parser.parse_args(argv)
    hook = loopprof_verdict if args.loopprof else None
    t0 = time.monotonic()
    sweeps = sweep(args.seconds, hook) if args.only in (None, "sweep") else {}
    runs = scenario_runs(hook) if args.only in (None, "scenarios") else []
    ready = readiness() if args.only in (None, "ready") else {}
    text = render(sweeps, runs, ready, args.seconds)
    Path(args.out).write_text(text)
    print(text)
    print(f"wrote {args.out} in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
