"""A small real asyncio/uvloop server with planted, self-measured work, for attach's end-to-end tests.

Every period the loop blocks for ``--block-ms`` (a pure-Python spin: holds the GIL), tokenizes on the loop for
``--tokenize-ms`` with a real BPE tokenizer trained offline (HF ``encode`` holds the GIL), and a worker thread
spins ``--thread-spin-ms`` every 20 ms. The server measures what it did with ``perf_counter`` and writes it to
``--truth`` at exit; with ``--agent-json`` it also runs loopprof's embedded agent and writes its report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time

INTERVALS: list[tuple[float, float]] = []  # GIL-holding spans, all threads (list.append is atomic)


def spin(ms: float) -> None:
    t0 = time.perf_counter()
    end = t0 + ms / 1000.0
    while time.perf_counter() < end:
        pass
    INTERVALS.append((t0, time.perf_counter()))


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    words = [f"w{i % 97}x{i % 13}" for i in range(4000)]
    tok.train_from_iterator(
        [" ".join(words[i : i + 50]) for i in range(0, 4000, 50)], trainers.BpeTrainer(vocab_size=300)
    )
    from transformers import PreTrainedTokenizerFast

    # Wrapped as transformers does for real models: its Python frames are what py-spy and the agent recognise.
    return PreTrainedTokenizerFast(tokenizer_object=tok), " ".join(words[:1500])


def union_ms(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted((max(s, lo), min(e, hi)) for s, e in intervals if e > lo and s < hi):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total * 1000.0


async def main(args: argparse.Namespace) -> dict:
    tok, text = make_tokenizer()
    agent = None
    if args.agent_json:  # after training the tokenizer, which blocks the loop before the planted work starts
        from loopprof.agent import Agent

        agent = Agent()
        agent.start()
    stop = time.perf_counter() + args.seconds
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)

    def worker() -> None:
        while time.perf_counter() < stop:
            if args.thread_spin_ms > 0:
                spin(args.thread_spin_ms)
            time.sleep(0.02)

    threading.Thread(target=worker, name="planted-worker", daemon=True).start()
    blocks: list[float] = []
    tok_ms = 0.0
    tok.encode(text)  # warm the tokenizer up before the window: a first call's set-up is not planted work
    # The agent reports from here, the moment attach is told to start: both windows cover the planted work only.
    since = agent.snapshot() if agent is not None else None
    t_start = time.perf_counter()
    print("ready", flush=True)
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        spin(args.block_ms)
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < args.tokenize_ms / 1000.0:
            tok.encode(text)
        t2 = time.perf_counter()
        INTERVALS.append((t1, t2))
        blocks.append((t2 - t0) * 1000.0)
        tok_ms += (t2 - t1) * 1000.0
        await asyncio.sleep(max(0.0, args.period_ms / 1000.0 - (t2 - t0)))
    elapsed = time.perf_counter() - t_start
    server.close()
    if agent is not None:
        agent.report(since=since).write(args.agent_json)
        agent.stop()
    return {
        "elapsed_s": elapsed,
        "loop_busy_fraction": sum(blocks) / 1000.0 / elapsed,
        "block_max_ms": max(blocks),
        "block_p50_ms": sorted(blocks)[len(blocks) // 2],
        "gil_held_fraction": union_ms(INTERVALS, t_start, t_start + elapsed) / 1000.0 / elapsed,
        "tokenize_fraction": tok_ms / 1000.0 / elapsed,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--period-ms", type=float, default=200.0)
    p.add_argument("--block-ms", type=float, default=40.0)
    p.add_argument("--tokenize-ms", type=float, default=20.0)
    p.add_argument("--thread-spin-ms", type=float, default=4.0)
    p.add_argument("--truth")
    p.add_argument("--agent-json")
    a = p.parse_args()
    if a.loop == "uvloop":
        import uvloop

        uvloop.install()
    truth = asyncio.run(main(a))
    if a.truth:
        with open(a.truth, "w") as fh:
            json.dump(truth, fh)
