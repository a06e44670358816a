"""A bounded async load client for the vLLM OpenAI server, and the client's view of each request.

Bounded in both count and time: ``concurrency`` requests in flight, at most ``max_requests`` in total, and the
run stops at ``duration_s`` whatever happens. Each request records its client-side send time, time to first
byte of content and end time, so they can be compared with vLLM's own ``vllm:time_to_first_token_seconds`` and
``vllm:e2e_request_latency_seconds``, which start at the server's ``arrival_time`` and so miss what happened
before it (HTTP parsing, waiting on a busy event loop, chat template, tokenization).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field

_WORDS = ["kalo", "mine", "rusa", "tovi", "zequ", "phst", "oran", "elix", "sato", "vize", "lone", "mika"]


def prompt_text(n_words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


@dataclass
class LoadSpec:
    concurrency: int = 16
    max_requests: int = 400
    duration_s: float = 20.0
    prompt_words: int = 50
    max_tokens: int = 16
    stream: bool = True
    chat: bool = True
    turns: int = 1  # chat turns the prompt is split into: more chat-template work per request
    top_logprobs: int = 0  # > 0 asks for per-token logprobs: more output-processing work on the API server


@dataclass
class RequestResult:
    sent_s: float  # time.time() just before the request was written
    ttft_s: float | None  # first content chunk after send (non-streaming: the whole response)
    e2e_s: float | None
    ok: bool
    error: str | None = None


@dataclass
class LoadResult:
    spec: LoadSpec
    wall_s: float
    results: list[RequestResult] = field(default_factory=list)

    @property
    def ok(self) -> list[RequestResult]:
        return [r for r in self.results if r.ok]

    def summary(self) -> dict[str, float | int | None]:
        ok = self.ok
        ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
        e2e = [r.e2e_s for r in ok if r.e2e_s is not None]
        return {
            "requests": len(self.results),
            "ok": len(ok),
            "errors": len(self.results) - len(ok),
            "throughput_rps": round(len(ok) / self.wall_s, 2) if self.wall_s else None,
            "ttft_mean_ms": _ms(statistics.fmean(ttft)) if ttft else None,
            "ttft_p50_ms": _ms(statistics.median(ttft)) if ttft else None,
            "e2e_mean_ms": _ms(statistics.fmean(e2e)) if e2e else None,
        }


def _ms(s: float) -> float:
    return round(s * 1000.0, 1)


def _body(spec: LoadSpec, i: int) -> dict:
    text = prompt_text(spec.prompt_words, i)
    body: dict = {"model": "tiny", "max_tokens": spec.max_tokens, "temperature": 1.0, "stream": spec.stream}
    body["ignore_eos"] = True  # random weights: keep output length fixed and known
    if spec.top_logprobs:
        if spec.chat:
            body.update(logprobs=True, top_logprobs=spec.top_logprobs)
        else:
            body["logprobs"] = spec.top_logprobs
    if spec.chat:
        words = text.split()
        step = max(1, len(words) // spec.turns)
        chunks = [" ".join(words[i : i + step]) for i in range(0, len(words), step)][: spec.turns]
        roles = ["user" if (len(chunks) - 1 - k) % 2 == 0 else "assistant" for k in range(len(chunks))]
        body["messages"] = [
            {"role": "system", "content": "You are terse."},
            *({"role": r, "content": c} for r, c in zip(roles, chunks, strict=True)),
        ]
    else:
        body["prompt"] = text
    return body


async def _one(client, url: str, spec: LoadSpec, i: int) -> RequestResult:
    body = _body(spec, i)
    sent = time.time()
    t0 = time.perf_counter()
    ttft = None
    try:
        if spec.stream:
            async with client.stream("POST", url, json=body) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    return RequestResult(sent, None, None, False, f"HTTP {resp.status_code}")
                async for line in resp.aiter_lines():
                    if ttft is None and line.startswith("data: ") and line != "data: [DONE]":
                        chunk = json.loads(line[6:])
                        choice = (chunk.get("choices") or [{}])[0]
                        if (choice.get("delta") or {}).get("content") or choice.get("text"):
                            ttft = time.perf_counter() - t0
        else:
            resp = await client.post(url, json=body)
            if resp.status_code != 200:
                return RequestResult(sent, None, None, False, f"HTTP {resp.status_code}")
            ttft = time.perf_counter() - t0
    except Exception as exc:  # a load client records failures, it does not stop on them
        return RequestResult(sent, None, None, False, f"{type(exc).__name__}: {exc}")
    return RequestResult(sent, ttft, time.perf_counter() - t0, True)


async def run_load(base_url: str, spec: LoadSpec) -> LoadResult:
    import httpx

    path = "/v1/chat/completions" if spec.chat else "/v1/completions"
    url = base_url + path
    counter = iter(range(spec.max_requests))
    results: list[RequestResult] = []
    deadline = time.monotonic() + spec.duration_s
    limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)

    async def worker(client) -> None:
        for i in counter:
            if time.monotonic() >= deadline:
                return
            results.append(await _one(client, url, spec, i))

    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), limits=limits) as client:
        tasks = [asyncio.create_task(worker(client)) for _ in range(spec.concurrency)]
        # In-flight requests may finish after the deadline; give them a bounded grace period.
        _done, pending = await asyncio.wait(tasks, timeout=spec.duration_s + 60.0)
        for t in pending:
            t.cancel()
    return LoadResult(spec, time.monotonic() - t0, results)


def run(base_url: str, spec: LoadSpec) -> LoadResult:
    return asyncio.run(run_load(base_url, spec))
