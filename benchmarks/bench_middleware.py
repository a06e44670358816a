"""Throughput and tail-latency cost of ``LoopProfMiddleware`` + the in-process agent under real load.

    .venv/bin/python benchmarks/bench_middleware.py [--rounds 5] [--seconds 3] [--connections 32]

Each round starts a real uvicorn server (uvloop, 127.0.0.1, one process, a FastAPI JSON route) twice — plain
and with the app wrapped in ``LoopProfMiddleware`` (agent with every probe on) — in alternating order, and
loads it for a fixed time from this process with a small keep-alive HTTP/1.1 client on uvloop (bounded: fixed
connections, fixed seconds). Prints per-run req/s, p99 latency and the server's CPU time per request, the
medians and their ratio as a markdown table, and writes it to
docs/benchmarks-middleware.md. Interleaving side by side in one invocation keeps a drifting machine from
favouring one variant; on a shared machine the spread between rounds is still the honest error bar.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = b'{"ok":true}'
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


# ----------------------------------------------------------------------------------------------- server side
def make_app():
    """A FastAPI JSON endpoint, the shape of an OpenAI-style API server's cheapest route."""
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/")
    async def root() -> dict:
        return {"ok": True}

    return api


def serve(port: int, with_loopprof: bool) -> None:
    import uvicorn

    target = make_app()
    if with_loopprof:
        import loopprof

        target = loopprof.LoopProfMiddleware(target)
    uvicorn.run(target, host="127.0.0.1", port=port, loop="uvloop", log_level="error", access_log=False)


# ----------------------------------------------------------------------------------------------- load side
async def _connection(port: int, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if body != BODY:
                raise RuntimeError(f"unexpected response {head!r} {body!r}")
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


async def _load(port: int, seconds: float, connections: int) -> tuple[float, float]:
    latencies: list[float] = []
    t0 = time.perf_counter()
    until = t0 + seconds
    await asyncio.gather(*(_connection(port, until, latencies) for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else float("nan")
    return len(latencies) / elapsed, p99


def _pin(cpu: int) -> None:
    """``--pin``: server on CPU 0, load generator on CPU 1 (steadier on a quiet machine, worse on a shared one,
    where a pinned server cannot escape a neighbour that hogs its core)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})


def one_run(with_loopprof: bool, seconds: float, connections: int, pin: bool = False) -> tuple[float, float, float]:
    import psutil
    import uvloop

    from examples.harness import free_port, wait_port  # here: the --serve child runs by path, without examples

    port = free_port()
    cmd = [sys.executable, __file__, "--serve", str(port)] + (["--loopprof"] if with_loopprof else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPPROF_")}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, start_new_session=True, preexec_fn=(lambda: _pin(0)) if pin else None
    )
    try:
        wait_port(port, proc)
        server = psutil.Process(proc.pid)
        uvloop.run(_load(port, 0.5, connections))  # warm-up
        cpu0 = sum(server.cpu_times()[:2])
        rps, p99 = uvloop.run(_load(port, seconds, connections))
        cpu_us = (sum(server.cpu_times()[:2]) - cpu0) / (rps * seconds) * 1e6
        return rps, p99, cpu_us
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-middleware.md"))
    ap.add_argument("--pin", action="store_true", help="pin the server to CPU 0 and the load to CPU 1")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--loopprof", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.loopprof)
        return

    if args.pin:
        _pin(1)
    runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    rows = []
    for r in range(args.rounds):
        for variant in (False, True) if r % 2 == 0 else (True, False):
            rps, p99, cpu_us = one_run(variant, args.seconds, args.connections, args.pin)
            runs[variant].append((rps, p99, cpu_us))
            name = "middleware + agent" if variant else "plain"
            rows.append(f"| {r + 1} | {name} | {rps:,.0f} | {p99:.2f} | {cpu_us:.1f} |")
            print(rows[-1], flush=True)
    med = {v: [statistics.median(x[i] for x in runs[v]) for i in range(3)] for v in runs}
    (p_rps, p_p99, p_cpu), (w_rps, w_p99, w_cpu) = med[False], med[True]
    load = os.getloadavg()[0]
    table = "\n".join(
        [
            "# LoopProfMiddleware + agent: cost under load",
            "",
            f"`.venv/bin/python benchmarks/bench_middleware.py --rounds {args.rounds} --seconds {args.seconds:g} "
            f"--connections {args.connections}{' --pin' if args.pin else ''}` — uvicorn (uvloop, 1 process) "
            "on 127.0.0.1 "
            f"serving a FastAPI JSON route, {args.connections} keep-alive connections from a uvloop client on the "
            f"same machine ({'server on CPU 0, client on CPU 1' if args.pin else 'not pinned'}); "
            "plain and wrapped runs interleaved. The agent runs with every probe on (defaults: 2 ms lag tick, "
            "200 Hz agent thread). Server CPU per request is the steadier number when the machine is shared.",
            "",
            f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f} at the end. "
            "**The machine was shared with other jobs while this ran (CPU contended): the spread between rounds "
            "is the error bar, and a ratio within it is no measurable difference.**",
            "",
            "| | plain | middleware + agent | ratio |",
            "| --- | ---: | ---: | ---: |",
            f"| median req/s | {p_rps:,.0f} | {w_rps:,.0f} | {w_rps / p_rps:.3f} ({1 - w_rps / p_rps:+.1%} loss) |",
            f"| median p99 latency (ms) | {p_p99:.2f} | {w_p99:.2f} | {w_p99 / p_p99:.3f} |",
            f"| median server CPU per request (µs) | {p_cpu:.1f} | {w_cpu:.1f} | {w_cpu / p_cpu:.3f} |",
            "",
            "<details><summary>every run</summary>",
            "",
            "| round | variant | req/s | p99 ms | server CPU µs/req |",
            "| ---: | --- | ---: | ---: | ---: |",
            *rows,
            "",
            "</details>",
            "",
        ]
    )
    print()
    print(table)
    Path(args.out).write_text(table, encoding="utf-8")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
