"""What each part of the in-process agent costs the profiled process, in CPU per request, side by side.

    .venv/bin/python -m benchmarks.bench_agent_cost [--rounds 5] [--requests 8000]

A load test over loopback on a 2-core machine cannot resolve a 1% cost: the load generator and the server share
the cores, and the plain server alone varies by ±12% between runs. This benchmark removes both sources of noise:
one process drives a FastAPI app (the same route as ``bench_middleware``) through ``httpx.ASGITransport`` on a
uvloop loop, a fixed number of requests per round, and measures the process's CPU time (``time.process_time``,
which includes the agent's own thread). Configurations are interleaved round by round; the table has medians and
the ratio to the plain app. Writes docs/benchmarks-agent-cost.md.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# name -> AgentConfig overrides (None: the plain app, no middleware, no agent)
CONFIGS: dict[str, dict[str, Any] | None] = {
    "plain": None,
    "middleware + agent (defaults)": {},
    "  without GC timing": {"gc": False},
    "  without GIL knocker": {"gil": False},
    "  without tokenizer patches": {"tokenization": False},
    "  lag probe every 10 ms": {"lag_interval_ms": 10.0},
}


def make_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/completions")
    async def completions(body: dict) -> dict:
        text = " ".join(str(body.get("prompt", "")).split()[:64])
        return {"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": text}]}

    return app


async def drive(app: Any, n: int) -> float:
    """CPU seconds per request for ``n`` requests through the app."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        body = {"model": "m", "prompt": "the quick brown fox " * 32, "max_tokens": 16}
        for _ in range(50):  # warm-up
            await client.post("/v1/completions", json=body)
        gc.collect()
        t0 = time.process_time()
        for _ in range(n):
            await client.post("/v1/completions", json=body)
        return (time.process_time() - t0) / n


def one_round(name: str, overrides: dict[str, Any] | None, n: int) -> float:
    import uvloop

    import loopprof
    from loopprof.agent import Agent
    from loopprof.config import AgentConfig

    app = make_app()
    agent = None
    if overrides is not None:
        agent = Agent(replace(AgentConfig(), **overrides))
        app = loopprof.LoopProfMiddleware(app, agent=agent)

    async def main() -> float:
        if agent is not None:
            agent.start()
            agent.attach_loop()
        return await drive(app, n)

    try:
        return uvloop.run(main())
    finally:
        if agent is not None:
            agent.stop()


def table(results: dict[str, list[float]]) -> str:
    base = statistics.median(results["plain"])
    lines = [
        "| configuration | median CPU per request (µs) | ratio to plain | cost (µs per request) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, values in results.items():
        med = statistics.median(values)
        lines.append(f"| {name.strip()} | {med * 1e6:.1f} | {med / base:.3f} | {(med - base) * 1e6:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    # ~5 s rounds: long enough for the GC probe to reach its duty cycle, as in a long-running server.
    ap.add_argument("--requests", type=int, default=8000)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-agent-cost.md"))
    args = ap.parse_args(argv)
    results: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for r in range(args.rounds):
        order = list(CONFIGS.items()) if r % 2 == 0 else list(reversed(CONFIGS.items()))
        for name, overrides in order:
            results[name].append(one_round(name, overrides, args.requests))
        out(f"round {r + 1}/{args.rounds} done")
    text = table(results)
    out(text)
    doc = (
        "# What the in-process agent costs, part by part\n\n"
        f"`python -m benchmarks.bench_agent_cost --rounds {args.rounds} --requests {args.requests}` — "
        "a FastAPI JSON route driven in-process through `httpx.ASGITransport` on uvloop (no network, no competing "
        "load generator); process CPU time per request, which includes the agent's own thread; configurations "
        f"interleaved round by round, medians of {args.rounds}. Python {sys.version.split()[0]}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n{text}\n"
    )
    Path(args.out).write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    main()
