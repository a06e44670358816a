"""A mini serving stack shaped like vLLM V1: API server(s) on uvicorn/uvloop, an EngineCore child over ZeroMQ.

Process tree (``api_server_count == 1``, like ``vllm serve``)::

    python -m examples.stack            API server: FastAPI on uvicorn + uvloop, tokenizer, detokenizer
      └─ python -m examples.stack.engine   EngineCore: batches requests, busy-waits to simulate GPU time

With ``api_server_count > 1`` the first process is a launcher that owns the listening socket and starts the
engine and N API-server processes (``python -m examples.stack.api_server``) sharing that socket.
"""
