"""The two opposite states of a real vLLM server on CPU, as server flags plus the load that drives them.

``engine``: a model large enough that each step is slow, a small batch cap (``--max-num-seqs 2``) and more
concurrent requests than the cap, so requests queue in the engine (``vllm:num_requests_waiting`` > 0) while the
API server's event loop idles. ``frontend``: the tiny model, so steps are cheap; a large batch cap; many
concurrent streaming chat requests with long prompts and per-token top-20 logprobs, so the one API-server
event loop (HTTP, chat template and tokenization hand-off, per-token detokenization and SSE) is what limits
throughput while the engine waits for input. Measured numbers for both are in docs/benchmarks-vllm.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from load import LoadSpec


@dataclass(frozen=True)
class State:
    model: str  # a size from build_model.SIZES
    server_args: list[str]
    load: LoadSpec
    expected: str  # the bottleneck loopprof must report
    env: dict[str, str] = field(default_factory=dict)


STATES: dict[str, State] = {
    "engine": State(
        model="large",
        server_args=["--max-num-seqs", "2", "--max-num-batched-tokens", "512"],
        load=LoadSpec(concurrency=8, max_requests=400, duration_s=25.0, prompt_words=20, max_tokens=32, stream=False),
        expected="engine",
    ),
    "frontend": State(
        model="tiny",
        server_args=["--max-num-seqs", "256", "--max-num-batched-tokens", "32768"],
        load=LoadSpec(
            concurrency=64,
            max_requests=4000,
            duration_s=25.0,
            prompt_words=250,
            max_tokens=64,
            turns=16,
            top_logprobs=20,
        ),
        expected="frontend",
    ),
}
