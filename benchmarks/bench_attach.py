"""What ``loopprof attach`` costs the server it profiles, side by side in one run.

For N = 1, 2, 4, 8 frontend processes (uvicorn-style asyncio HTTP servers, each answering a small CPU-bound
request), a closed-loop load generator measures throughput and p99 latency with and without ``loopprof attach``
at the default rate, in interleaved repetitions (off, on, off, on, ...); medians and ratios are reported, with
loopprof's own CPU (its process plus py-spy children) per profiled process. Keep total time under ~6 minutes:

    .venv/bin/python benchmarks/bench_attach.py [--reps 3] [--seconds 6] [--procs 1,2,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER = r"""
import asyncio, sys
def work():
    s = 0
    for i in range(3000):
        s += i * i
    return s
async def handle(r, w):
    while True:
        line = await r.readline()
        if not line:
            break
        w.write(b"%d\n" % work())
        await w.drain()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.sleep(float(sys.argv[2]))
asyncio.run(main())
"""


async def _client(port: int, stop: float, lat: list[float]) -> int:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        w.write(b"x\n")
        await w.drain()
        await r.readline()
        lat.append(time.perf_counter() - t0)
        n += 1
    w.close()
    return n


async def _load(ports: list[int], seconds: float, conns: int = 4) -> tuple[float, float]:
    stop = time.perf_counter() + seconds
    lat: list[float] = []
    counts = await asyncio.gather(*(_client(p, stop, lat) for p in ports for _ in range(conns)))
    lat.sort()
    return sum(counts) / seconds, lat[int(0.99 * (len(lat) - 1))] * 1000.0


def _start_servers(n: int, life_s: float) -> tuple[list[subprocess.Popen], list[int]]:
    procs, ports = [], []
    for i in range(n):
        port = 18500 + i + (os.getpid() % 200) * 10
        p = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(life_s)], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        procs.append(p)
        ports.append(port)
    return procs, ports


def _attach(pids: list[int], seconds: float, out: Path) -> subprocess.Popen:
    code = (
        "import sys; from loopprof.attach.session import run_attach; "
        f"sys.exit(run_attach({pids[0]}, duration_s={seconds}, rate_hz=100, json_path={str(out)!r}, otlp_url=None, "
        f"live=False, engine_pids=[], frontend_pids={pids[1:]!r}, metrics_url=None))"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL)


def bench(n: int, reps: int, seconds: float) -> dict:
    procs, ports = _start_servers(n, life_s=reps * 2 * (seconds + 6) + 30)
    off, on, cpu = [], [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(reps):
                off.append(asyncio.run(_load(ports, seconds)))
                out = Path(tmp) / f"r{rep}.json"
                att = _attach([p.pid for p in procs], seconds + 3, out)
                time.sleep(2.0)  # let the checks and the first chunk start
                on.append(asyncio.run(_load(ports, seconds)))
                att.wait(timeout=60)
                if out.exists():
                    cpu.append(json.loads(out.read_text())["sampler"]["overhead_cpu_fraction"])
    finally:
        for p in procs:
            p.kill()
            p.wait()
    med = statistics.median
    thr_off, thr_on = med(x[0] for x in off), med(x[0] for x in on)
    p99_off, p99_on = med(x[1] for x in off), med(x[1] for x in on)
    own = med(cpu) if cpu else None
    return {
        "frontends": n,
        "rps_off": round(thr_off, 1),
        "rps_on": round(thr_on, 1),
        "throughput_ratio": round(thr_on / thr_off, 3),
        "p99_ms_off": round(p99_off, 2),
        "p99_ms_on": round(p99_on, 2),
        "p99_ratio": round(p99_on / p99_off, 3),
        "loopprof_cpu_cores": own,
        "loopprof_cpu_per_process": None if own is None else round(own / n, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--procs", default="1,2,4,8")
    a = ap.parse_args()
    rows = [bench(int(n), a.reps, a.seconds) for n in a.procs.split(",")]
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
