"""The API server's side of the engine link, shaped like vLLM's ``AsyncLLM``: requests go out over ZeroMQ; one
``output_handler`` task on the event loop receives every engine output, detokenizes each new token on the loop
(vLLM's ``OutputProcessor``) and hands the text to the waiting request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from examples.stack import protocol
from examples.stack.groundtruth import FrontendTruth
from examples.stack.metrics import Metrics
from examples.stack.settings import StackSettings
from examples.stack.tokenizer import IncrementalDetokenizer

STATS_PUSH_S = 0.5
HELLO_TIMEOUT_S = 30.0


@dataclass
class _Stream:
    detok: IncrementalDetokenizer
    queue: asyncio.Queue[tuple[str, bool]] = field(default_factory=asyncio.Queue)
    arrival_t: float = field(default_factory=time.perf_counter)
    last_t: float | None = None


class EngineClient:
    def __init__(self, settings: StackSettings, address: str, tokenizer: Any, truth: FrontendTruth, metrics: Metrics):
        self.s = settings
        self.address = address
        self.tokenizer = tokenizer
        self.truth = truth
        self.metrics = metrics
        self.engine_pid: int | None = None
        self._streams: dict[str, _Stream] = {}
        self._stats_waiters: list[asyncio.Future[list[Any]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)

    async def start(self) -> None:
        self._sock.connect(self.address)
        await self._sock.send(protocol.pack([protocol.HELLO, os.getpid()]))
        if not await self._sock.poll(HELLO_TIMEOUT_S * 1000):
            raise RuntimeError(f"engine at {self.address} did not answer within {HELLO_TIMEOUT_S:.0f} s")
        self.engine_pid = protocol.unpack(await self._sock.recv())[1]
        self._tasks.append(asyncio.create_task(self._output_handler()))
        if self.s.api_server_count > 1:
            self._tasks.append(asyncio.create_task(self._push_stats()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sock.close(0)
        self._ctx.term()

    async def generate(
        self, request_id: str, prompt_ids: list[int], max_tokens: int
    ) -> AsyncIterator[tuple[str, bool]]:
        """Text deltas for one request as the engine produces them; aborts the request if the client goes."""
        stream = _Stream(IncrementalDetokenizer(self.tokenizer))
        self._streams[request_id] = stream
        self.metrics.prompt_tokens.inc(len(prompt_ids))
        self.truth.requests_started += 1
        await self._sock.send(protocol.pack([protocol.ADD, request_id, prompt_ids, max_tokens]))
        finished = False
        try:
            while not finished:
                delta, finished = await stream.queue.get()
                yield delta, finished
        finally:
            self._streams.pop(request_id, None)
            if finished:
                self.truth.requests_finished += 1
                self.metrics.request_success.inc()
                self.metrics.e2e.observe(time.perf_counter() - stream.arrival_t)
            else:
                await self._sock.send(protocol.pack([protocol.ABORT, request_id]))

    async def stats(self) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        """The engine's counters and the latest snapshots other API servers pushed to it."""
        waiter: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._stats_waiters.append(waiter)
        await self._sock.send(protocol.pack([protocol.STATS, self.truth.snapshot(), True]))
        msg = await asyncio.wait_for(waiter, 10.0)
        return msg[1], {int(pid): snap for pid, snap in msg[2].items()}

    async def _push_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_PUSH_S)
            await self._sock.send(protocol.pack([protocol.STATS, self.truth.snapshot(), False]))

    async def _output_handler(self) -> None:
        while True:
            msg = protocol.unpack(await self._sock.recv())
            if msg[0] == protocol.OUT:
                self._process_outputs(msg[1])
                self.metrics.engine_state(msg[2], msg[3], msg[4])
            elif msg[0] == protocol.STATS and self._stats_waiters:
                self._stats_waiters.pop(0).set_result(msg)

    def _process_outputs(self, items: list[list[Any]]) -> None:
        now = time.perf_counter()
        for request_id, token_id, finished in items:
            stream = self._streams.get(request_id)
            if stream is None:
                continue  # aborted meanwhile
            delta = self.truth.timed_tokenize(stream.detok.add, token_id)  # on the loop, as in vLLM
            if stream.last_t is None:
                self.metrics.ttft.observe(now - stream.arrival_t)
            else:
                self.metrics.itl.observe(now - stream.last_t)
            stream.last_t = now
            self.metrics.generation_tokens.inc()
            self.truth.tokens_out += 1
            stream.queue.put_nowait((delta, finished))
