"""Run one state of the real vLLM server under load and collect vLLM's own view beside the profiler's.

For a state from ``states.py``: build the model, start the server, warm it up, then for one bounded window
scrape ``/metrics`` (gauges every 0.5 s; histogram sums/counts at both ends), drive the load, and optionally
run a profiler on the server (``loopprof attach``, or raw ``py-spy record`` whose stacks are sorted into
tokenize / detokenize / chat_template / zmq_msgpack per thread with :mod:`loopprof.integrations.vllm`).

    python examples/vllm/experiment.py frontend --profiler attach --out /tmp/frontend
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_model import ensure_model
from load import LoadResult, LoadSpec, run
from serve import Server
from states import STATES

from loopprof.integrations import vllm as vllm_info

SETTLE_S = 4.0


def scrape(base_url: str) -> dict[str, float]:
    """Every sample of ``/metrics`` by name (labels summed), histograms' _sum/_count included."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_bucket"):
                continue
            out[s.name] = out.get(s.name, 0.0) + float(s.value)
    return out


class GaugeWatcher(threading.Thread):
    """Samples the waiting/running gauges during the window, as loopprof's metrics probe would."""

    def __init__(self, base_url: str, period_s: float = 0.5) -> None:
        super().__init__(daemon=True, name="gauge-watcher")
        self.base_url, self.period_s = base_url, period_s
        self.samples: list[tuple[float | None, float | None]] = []
        self.scrape_s: list[float] = []  # /metrics is served by the same event loop: slow when it is saturated
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.period_s):
            t0 = time.perf_counter()
            try:
                m = scrape(self.base_url)
            except OSError:
                continue
            self.scrape_s.append(time.perf_counter() - t0)
            self.samples.append((vllm_info.metric_value(m, "waiting"), vllm_info.metric_value(m, "running")))

    def stop(self) -> dict[str, float | None]:
        self._stop_event.set()
        self.join(timeout=5)
        waiting = [w for w, _ in self.samples if w is not None]
        running = [r for _, r in self.samples if r is not None]
        return {
            "waiting_mean": round(statistics.fmean(waiting), 2) if waiting else None,
            "waiting_max": max(waiting) if waiting else None,
            "running_mean": round(statistics.fmean(running), 2) if running else None,
            "scrapes": len(self.samples),
            "scrape_ms_mean": round(statistics.fmean(self.scrape_s) * 1000, 1) if self.scrape_s else None,
        }


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def categories_from_raw(path: Path, rate_hz: float, duration_s: float) -> dict[str, dict[str, float]]:
    """py-spy ``record --format raw --threads --subprocesses`` (active samples only) → per process/thread:
    share of wall time active and share in each vLLM frame category."""
    expected = rate_hz * duration_s
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        procs = [f for f in frames if f.startswith("process ")]
        threads = [i for i, f in enumerate(frames) if f.startswith("thread (")]
        if not threads:
            continue
        pname = re.sub(r'^process \d+:"?', "", procs[-1]).split()[0] if procs else "?"
        thread = re.sub(r"^thread \(\d+\):? ?", "", frames[threads[0]])
        key = f"{pname.rsplit('/', 1)[-1]} | {thread}"
        pairs = []
        for f in frames[threads[0] + 1 :]:
            m = _FRAME.match(f)
            if m:
                pairs.append((m["func"], m["file"]))
        counts[key]["active"] += int(n)
        cat = vllm_info.classify_stack(pairs)
        if cat:
            counts[key][cat] += int(n)
    return {k: {c: round(v / expected, 3) for c, v in sorted(cnt.items())} for k, cnt in sorted(counts.items())}


def start_profiler(kind: str, server: Server, out: Path, window_s: float) -> subprocess.Popen[bytes] | None:
    pid = server.pid
    if kind == "none":
        return None
    if kind == "pyspy":
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        cmd = [pyspy, "record", "--pid", str(pid), "--subprocesses", "--threads", "--nonblocking", "--rate", "100"]
        cmd += ["--format", "raw", "--duration", str(int(window_s)), "-o", str(out / "pyspy.txt")]
    else:
        cmd = [sys.executable, "-m", "loopprof", "attach", str(pid), "--duration", str(window_s), "--no-live"]
        cmd += ["--metrics-url", server.base_url + "/metrics"]
        cmd += ["--json", str(out / "report.json")]
    return subprocess.Popen(cmd, stdout=open(out / f"{kind}.log", "wb"), stderr=subprocess.STDOUT)


def run_state(name: str, *, profiler: str = "none", out: Path, load: LoadSpec | None = None) -> dict:
    state = STATES[name]
    spec = load or state.load
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    model = ensure_model(state.model)
    build_s = time.monotonic() - t0
    with Server(model, state.server_args, log=out / "server.log") as server:
        server.start()
        run(server.base_url, LoadSpec(concurrency=4, max_requests=8, duration_s=30, max_tokens=4))  # warm-up
        # Measure a steady-state window: the load's first burst (every client's prefill at once) settles first.
        box: list[LoadResult] = []
        loader = threading.Thread(target=lambda: box.append(run(server.base_url, spec)), daemon=True)
        loader.start()
        time.sleep(SETTLE_S)
        window_s = spec.duration_s - SETTLE_S - 1.0
        before, t_before = scrape(server.base_url), time.time()
        watcher = GaugeWatcher(server.base_url)
        watcher.start()
        prof = start_profiler(profiler, server, out, window_s)
        time.sleep(window_s)
        gauges = watcher.stop()
        after, t_after = scrape(server.base_url), time.time()
        if prof is not None:
            prof.wait(timeout=window_s + 120)
        loader.join(timeout=spec.duration_s + 90)
        ready_s = server.ready_s
    result = box[0]
    # The requests vLLM's histograms saw in the window: those that finished in it.
    done = [r for r in result.results if r.e2e_s is not None and t_before <= r.sent_s + r.e2e_s <= t_after]
    client = {**LoadResult(spec, t_after - t_before, done).summary(), "all_requests": result.summary()}
    server_ms = vllm_info.histogram_means_ms(before, after)
    blind = {
        # without streaming the client's "first token" is the whole response: only e2e compares
        "ttft_ms": _diff(client["ttft_mean_ms"], server_ms["ttft"]) if spec.stream else None,
        "e2e_ms": _diff(client["e2e_mean_ms"], server_ms["e2e_latency"]),
    }
    summary = {
        "state": name,
        "server_args": state.server_args,
        "load": spec.__dict__,
        "model_build_s": round(build_s, 1),
        "server_ready_s": round(ready_s or 0.0, 1),
        "client": client,
        "vllm_gauges": gauges,
        "vllm_means_ms": {k: (round(v, 1) if v is not None else None) for k, v in server_ms.items()},
        "before_arrival_ms": blind,  # client-observed minus vLLM-observed: time vLLM's metrics cannot see
    }
    if profiler == "pyspy" and (out / "pyspy.txt").exists():
        summary["pyspy_categories"] = categories_from_raw(out / "pyspy.txt", 100.0, int(window_s))
    if profiler == "attach" and (out / "report.json").exists():
        summary["report"] = json.loads((out / "report.json").read_text())
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", choices=sorted(STATES))
    parser.add_argument("--profiler", choices=["none", "pyspy", "attach"], default="none")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--load", help="JSON overrides of the state's LoadSpec")
    ns = parser.parse_args()
    spec = None
    if ns.load:
        spec = LoadSpec(**{**STATES[ns.state].load.__dict__, **json.loads(ns.load)})
    print(json.dumps(run_state(ns.state, profiler=ns.profiler, out=ns.out, load=spec), indent=2))


if __name__ == "__main__":
    main()
