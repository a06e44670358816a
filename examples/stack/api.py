"""The OpenAI-compatible API (FastAPI), as vLLM's ``api_server`` serves it: parse → chat template + tokenize →
engine → incremental detokenization → SSE or one JSON body. Plus ``/metrics``, ``/health`` and
``/debug/groundtruth`` (this stack's own measurements, see groundtruth.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from examples.stack import pathology
from examples.stack.engine_client import EngineClient
from examples.stack.groundtruth import FrontendTruth
from examples.stack.metrics import Metrics
from examples.stack.settings import StackSettings

GROUNDTRUTH_SCHEMA = "loopprof-examples.groundtruth/1"


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str
    max_tokens: int = 16
    stream: bool = False
    temperature: float = 1.0


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatCompletionRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage]
    max_tokens: int = 16
    stream: bool = False
    temperature: float = 1.0


def build_app(settings: StackSettings, engine_address: str, tokenizer: Any, launcher_pid: int | None = None) -> FastAPI:
    truth = FrontendTruth()
    metrics = Metrics(settings.model)
    client = EngineClient(settings, engine_address, tokenizer, truth, metrics)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer")  # vLLM's tokenizer thread
    stop_pathologies = threading.Event()
    ids = itertools.count()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        truth.attach_loop()
        await client.start()
        pathology.install(settings, truth, stop_pathologies)
        print(
            f"examples.stack: {settings.scenario!r} ready on http://{settings.host}:{settings.port} "
            f"(api server pid {os.getpid()}, engine pid {client.engine_pid})",
            file=sys.stderr,
            flush=True,
        )
        yield
        stop_pathologies.set()
        truth.detach()
        await client.close()
        executor.shutdown(wait=False)

    app = FastAPI(lifespan=lifespan)

    async def tokenize(fn: Callable[..., list[int]], *args: Any, **kwargs: Any) -> list[int]:
        if settings.tokenize_on == "loop":
            return truth.timed_tokenize(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, lambda: truth.timed_tokenize(fn, *args, **kwargs))

    def preprocess_side_effects() -> None:
        if settings.gc_garbage_per_request:
            pathology.make_cyclic_garbage(settings.gc_garbage_per_request)

    async def respond(prompt_ids: list[int], max_tokens: int, stream: bool, chat: bool) -> Response:
        kind = "chatcmpl" if chat else "cmpl"
        request_id = f"{kind}-{os.getpid()}-{next(ids)}"
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        gen = client.generate(request_id, prompt_ids, max(1, max_tokens))

        def choice(text: str, finished: bool, delta: bool) -> dict[str, Any]:
            reason = "length" if finished else None
            if not chat:
                return {"index": 0, "text": text, "finish_reason": reason}
            body = {"role": "assistant", "content": text}
            return {"index": 0, ("delta" if delta else "message"): body, "finish_reason": reason}

        if stream:

            async def sse() -> AsyncIterator[bytes]:
                async for text, finished in gen:
                    chunk = {
                        "id": request_id,
                        "object": obj + (".chunk" if chat else ""),
                        "created": created,
                        "model": settings.model,
                        "choices": [choice(text, finished, True)],
                    }
                    yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream")
        parts = [text async for text, _ in gen]
        n_out = len(parts)
        return JSONResponse(
            {
                "id": request_id,
                "object": obj,
                "created": created,
                "model": settings.model,
                "choices": [choice("".join(parts), True, False)],
                "usage": {
                    "prompt_tokens": len(prompt_ids),
                    "completion_tokens": n_out,
                    "total_tokens": len(prompt_ids) + n_out,
                },
            }
        )

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Response:
        preprocess_side_effects()
        prompt_ids = await tokenize(tokenizer.encode, req.prompt)
        return await respond(prompt_ids, req.max_tokens, req.stream, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest) -> Response:
        preprocess_side_effects()
        messages = [m.model_dump() for m in req.messages]
        prompt_ids = await tokenize(tokenizer.apply_chat_template, messages, add_generation_prompt=True, tokenize=True)
        return await respond(list(prompt_ids), req.max_tokens, req.stream, chat=True)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": settings.model, "object": "model", "owned_by": "loopprof"}]}

    @app.get("/debug/groundtruth")
    async def groundtruth() -> dict[str, Any]:
        engine, fronts = await client.stats()
        fronts[os.getpid()] = truth.snapshot()
        return {
            "schema": GROUNDTRUTH_SCHEMA,
            "scenario": settings.scenario,
            "settings": json.loads(settings.to_json()),
            "pids": {
                "launcher": launcher_pid,
                "api_servers": sorted(fronts),
                "engine": client.engine_pid,
                "answered_by": os.getpid(),
            },
            "engine": engine,
            "frontends": [fronts[pid] for pid in sorted(fronts)],
        }

    return app
