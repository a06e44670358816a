"""``python -m examples.demo [--scenario NAME] [--seconds S]``: start the stack in a known state, load it, profile
it live with ``loopprof attach`` and print loopprof's verdict next to the stack's own ground truth.

Run from the repository root. Everything it starts is stopped when it ends (Ctrl-C included).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
from typing import Any

from examples.harness import StackError, running_stack
from examples.loadgen import LoadResult, run_load
from examples.profile import ProfileOutcome, profile_pid
from examples.scenarios import SCENARIOS, get_scenario

LOAD_MARGIN_S = 4.0  # load starts before and ends after the profiling window, so it covers all of it


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.0f}%"


def ground_truth_lines(truth: dict[str, Any]) -> list[str]:
    return [
        f"  event loop busy  {_pct(truth.get('loop_busy'))}   (kernel run+runqueue time of the loop thread)",
        f"  engine busy      {_pct(truth.get('engine_busy'))}   (engine's own step timers)",
        f"  GC time          {_pct(truth.get('gc_time_fraction'))}   (gc.callbacks timer)",
        f"  tokenize on loop {_pct(truth.get('tokenize_on_loop_fraction'))}   (timed tokenizer calls)",
        f"  planted blocks   {_pct(truth.get('block_fraction'))}   (timed blocking callback)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="frontend_bound")
    parser.add_argument("--seconds", type=float, default=10.0, help="profiling window (default 10)")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    sc = get_scenario(args.scenario)
    print(f"starting the example stack: {sc.name} — {sc.description}")
    try:
        with running_stack(sc) as stack:
            print(f"ready in {stack.ready_s:.1f} s: API server pid {stack.pid}, engine pid {stack.engine_pid}")
            result: list[LoadResult] = []

            def drive_load() -> None:
                if sc.load is not None:
                    seconds = args.seconds + 2 * LOAD_MARGIN_S
                    result.append(run_load(dataclasses.replace(sc.load, port=stack.port, duration_s=seconds)))

            before = stack.groundtruth()
            loader = threading.Thread(target=drive_load, daemon=True)
            loader.start()
            print(f"profiling pid {stack.pid} with loopprof attach for {args.seconds:.0f} s under load …")
            outcome: ProfileOutcome = profile_pid(stack.pid, args.seconds, stack.base_url + "/metrics", stream=True)
            truth = stack.window(before)
            loader.join()
    except StackError as exc:
        print(f"demo: the example stack did not start: {exc}", file=sys.stderr)
        return 1
    if result:
        print(f"load: {result[0].summary()}")
    print("ground truth (measured by the stack itself):")
    print("\n".join(ground_truth_lines(truth)))
    if not outcome.available:
        print(f"loopprof: {outcome.output} — showing the ground truth only.")
        return 0
    if outcome.output:
        print(outcome.output)
    print(f"loopprof verdict: {outcome.bottleneck or 'none (no report)'}   (expected: {sc.expected_bottleneck})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
