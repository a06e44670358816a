"""Tokenization time with a real BPE tokenizer trained at test time, against perf_counter ground truth."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from loopprof.agent import Agent
from loopprof.analysis.frontend import tokenization_window
from loopprof.config import AgentConfig
from loopprof.probes import tokenization
from tests.conftest import run_on, spin

TEXT = " ".join(f"word{i} token{i % 37} stream{i % 11} latency{i % 5}" for i in range(150))
REPO = Path(__file__).resolve().parents[2]


def test_share_and_on_loop_split_match_ground_truth(hf_tokenizer) -> None:
    agent = Agent(AgentConfig(gil=False, gc=False))
    ids = hf_tokenizer.encode(TEXT)
    truth = {"loop": 0.0, "thread": 0.0}
    stop = threading.Event()

    def detokenizer_thread() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            hf_tokenizer.decode(ids)
            truth["thread"] += time.perf_counter() - t0
            time.sleep(0.006)

    async def main():
        loop = asyncio.get_running_loop()
        agent.start()
        await asyncio.sleep(0.1)
        first = agent.snapshot()
        worker = threading.Thread(target=detokenizer_thread, name="detok")
        worker.start()
        t_end = loop.time() + 1.5
        while loop.time() < t_end:
            t0 = time.perf_counter()
            hf_tokenizer(TEXT)
            truth["loop"] += time.perf_counter() - t0
            spin(0.002)  # other work on the loop that is not tokenization
            await asyncio.sleep(0.004)
        stop.set()
        await loop.run_in_executor(None, worker.join)
        return first, agent.snapshot()

    try:
        first, last = run_on("asyncio", main)
    finally:
        stop.set()
        agent.stop()
    wall = last["t_mono_s"] - first["t_mono_s"]
    tok = tokenization_window(first, last, wall)
    total = truth["loop"] + truth["thread"]
    assert 0.1 < total / wall < 0.8, "the workload should tokenize a clear part of the time, not all of it"
    assert tok.time_fraction is not None and tok.on_loop_fraction is not None
    assert abs(tok.time_fraction - total / wall) <= 0.05, (tok.time_fraction, total / wall)
    assert abs(tok.on_loop_fraction - truth["loop"] / total) <= 0.05, (tok.on_loop_fraction, truth)
    assert set(tok.by_operation) == {"encode", "decode"}
    assert tok.by_operation["decode"]["on_loop_ms"] == 0.0
    assert tok.by_operation["encode"]["on_loop_ms"] == tok.by_operation["encode"]["total_ms"]
    assert tok.method == "instrumented"
    assert tokenization.patched() == []  # stop() put every method back


def test_only_the_outermost_call_counts(hf_tokenizer) -> None:
    pytest.importorskip("jinja2")  # transformers needs it for chat templates
    tokenization.start()
    try:
        before = tokenization.snapshot()["by_operation"]
        hf_tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=True)
        after = tokenization.snapshot()["by_operation"]
    finally:
        tokenization.stop()
    calls = {op: after[op]["calls"] - before.get(op, {}).get("calls", 0) for op in after}
    calls = {op: n for op, n in calls.items() if n}
    assert calls == {"chat_template": 1}  # its inner encode is part of the same call


def test_tiktoken_is_patched_and_restored() -> None:
    tiktoken = pytest.importorskip("tiktoken")
    original = tiktoken.Encoding.encode
    enc = tiktoken.Encoding(
        name="bytes", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={}
    )
    tokenization.start()
    try:
        assert tiktoken.Encoding.encode is not original
        enc.decode(enc.encode("hello world"))
        ops = tokenization.snapshot()["by_operation"]
    finally:
        tokenization.stop()
    assert tiktoken.Encoding.encode is original
    assert ops["encode"]["calls"] >= 1 and ops["decode"]["calls"] >= 1


def test_tokenize_span_context_manager_and_decorator_across_threads() -> None:
    span = tokenization.tokenize_span("custom")

    @tokenization.tokenize_span("custom")
    def work() -> None:
        with span:  # nested: counted once
            spin(0.01)

    tokenization.start()
    try:
        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with span:
            spin(0.01)
        snap = tokenization.snapshot()
    finally:
        tokenization.stop()
    custom = snap["by_operation"]["custom"]
    assert custom["calls"] == 4
    assert 35 <= custom["total_ms"] < 200


def test_span_records_nothing_when_the_probe_is_off() -> None:
    before = tokenization.snapshot()["by_operation"].get("off_op")
    with tokenization.tokenize_span("off_op"):
        pass
    assert tokenization.snapshot()["by_operation"].get("off_op") == before is None


@pytest.mark.slow
def test_tokenizers_imported_after_start_are_patched(tmp_path) -> None:
    """The post-import hook: transformers imported only after the agent started is still instrumented."""
    script = textwrap.dedent(
        """
        import json, sys
        import loopprof
        loopprof.start()
        assert "transformers" not in sys.modules
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.train_from_iterator(["hello world"] * 50, trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]"]))
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
        fast.decode(fast("hello world")["input_ids"])
        print(json.dumps(loopprof.get_agent().snapshot()["tokenization"]["by_operation"]))
        loopprof.stop()
        from loopprof.probes import tokenization
        assert tokenization.patched() == [], tokenization.patched()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    ops = json.loads(done.stdout.strip().splitlines()[-1])
    assert ops["encode"]["calls"] == 1 and ops["decode"]["calls"] == 1
