"""A bounded load generator modelled on ``vllm bench serve``: N concurrent clients send OpenAI completions (or
chat) requests to 127.0.0.1 and report req/s, TTFT and inter-token latency.

Raw asyncio streams, not httpx: on a 2-core machine the load generator must cost far less CPU than the server
it loads. Bounded twice: at most ``max_requests`` requests, no new request after ``duration_s``, and in-flight
requests are cut off ``timeout_s`` later.

Library: ``run_load(LoadSettings(port=8000, concurrency=16))`` → :class:`LoadResult`.
CLI: ``python -m examples.loadgen --port 8000 --concurrency 16 --duration-s 10 --stream``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field

from examples.corpus import prompt_text
from examples.stack.settings import add_flags, overrides_from_args

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class LoadSettings:
    port: int = 8000
    concurrency: int = 8
    max_requests: int = 1000
    duration_s: float = 10.0
    prompt_tokens: int = 256
    output_tokens: int = 32
    stream: bool = True
    chat: bool = False
    timeout_s: float = 30.0


@dataclass
class LoadResult:
    settings: LoadSettings
    completed: int = 0
    failed: int = 0
    duration_s: float = 0.0
    req_per_s: float | None = None
    output_tok_per_s: float | None = None
    ttft_ms_p50: float | None = None
    ttft_ms_p99: float | None = None
    itl_ms_p50: float | None = None
    itl_ms_p99: float | None = None
    e2e_ms_p50: float | None = None
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        def ms(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.1f}"

        rps = "n/a" if self.req_per_s is None else f"{self.req_per_s:.1f}"
        return (
            f"{self.completed} ok, {self.failed} failed in {self.duration_s:.1f} s: {rps} req/s; "
            f"TTFT p50 {ms(self.ttft_ms_p50)} ms p99 {ms(self.ttft_ms_p99)} ms; "
            f"ITL p50 {ms(self.itl_ms_p50)} ms p99 {ms(self.itl_ms_p99)} ms"
        )


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values (not measured is not 0)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def _request_bytes(s: LoadSettings, seed: int) -> bytes:
    prompt = prompt_text(s.prompt_tokens, seed)
    if s.chat:
        path = "/v1/chat/completions"
        body: dict[str, object] = {"messages": [{"role": "user", "content": prompt}]}
    else:
        path = "/v1/completions"
        body = {"prompt": prompt}
    body.update({"model": "loopprof-mini", "max_tokens": s.output_tokens, "stream": s.stream})
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {LOCALHOST}:{s.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _read_body_chunks(reader: asyncio.StreamReader):  # type: ignore[no-untyped-def]
    """Yield the body's pieces as they arrive (chunked or Content-Length); raises on a non-200 status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {data[:200]!r}")
            yield data[:-2]
    else:
        data = await reader.readexactly(int(headers.get("content-length", "0")))
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:200]!r}")
        yield data


class _Run:
    def __init__(self, s: LoadSettings) -> None:
        self.s = s
        self.ids = itertools.count()
        self.t0 = time.perf_counter()
        self.stop_at = self.t0 + s.duration_s
        self.last_done = self.t0
        self.result = LoadResult(s)
        self.ttft: list[float] = []
        self.itl: list[float] = []
        self.e2e: list[float] = []

    def _fail(self, exc: BaseException) -> None:
        self.result.failed += 1
        if len(self.result.errors) < 5:
            self.result.errors.append(f"{type(exc).__name__}: {exc}")

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seed: int) -> None:
        start = time.perf_counter()
        writer.write(_request_bytes(self.s, seed))
        first: float | None = None
        last = start
        async for piece in _read_body_chunks(reader):
            now = time.perf_counter()
            tokens = piece.count(b"data: ") - piece.count(b"data: [DONE]") if self.s.stream else 1
            if tokens <= 0:
                continue
            if first is None:
                first = now
            else:
                self.itl.append((now - last) * 1000.0)
            last = now
        end = time.perf_counter()
        self.ttft.append(((first or end) - start) * 1000.0)
        self.e2e.append((end - start) * 1000.0)
        self.result.completed += 1
        self.last_done = end

    async def worker(self) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while time.perf_counter() < self.stop_at:
                seed = next(self.ids)
                if seed >= self.s.max_requests:
                    return
                try:
                    if conn is None:
                        conn = await asyncio.open_connection(LOCALHOST, self.s.port)
                    await self._one(*conn, seed)
                except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError) as exc:
                    self._fail(exc)
                    if conn is not None:
                        conn[1].close()
                    conn = None
                    await asyncio.sleep(0.05)  # a refused connection must not become a busy loop
        finally:
            if conn is not None:
                conn[1].close()

    def finish(self) -> LoadResult:
        r = self.result
        r.duration_s = self.last_done - self.t0
        if r.completed and r.duration_s > 0:
            r.req_per_s = r.completed / r.duration_s
            r.output_tok_per_s = (len(self.itl) + r.completed) / r.duration_s if self.s.stream else None
        r.ttft_ms_p50, r.ttft_ms_p99 = percentile(self.ttft, 0.5), percentile(self.ttft, 0.99)
        r.itl_ms_p50, r.itl_ms_p99 = percentile(self.itl, 0.5), percentile(self.itl, 0.99)
        r.e2e_ms_p50 = percentile(self.e2e, 0.5)
        return r


async def run_load_async(settings: LoadSettings) -> LoadResult:
    run = _Run(settings)
    tasks = [asyncio.create_task(run.worker()) for _ in range(settings.concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=settings.duration_s + settings.timeout_s)
    for task in pending:  # cut off: requests still in flight past the bound count as failed
        task.cancel()
        run._fail(TimeoutError("request still running at the load's time limit"))
    await asyncio.gather(*tasks, return_exceptions=True)
    return run.finish()


def run_load(settings: LoadSettings) -> LoadResult:
    """Drive load from a caller without an event loop (tests, benchmarks)."""
    return asyncio.run(run_load_async(settings))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.loadgen", description=__doc__.split("\n\n")[0])
    add_flags(parser, LoadSettings)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run_load(LoadSettings(**overrides_from_args(args, LoadSettings)))
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    if result.completed == 0:
        sys.exit(f"loadgen: no request completed ({'; '.join(result.errors[:2]) or 'no errors recorded'})")


if __name__ == "__main__":
    main()
