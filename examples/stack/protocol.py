"""The frontend ↔ EngineCore wire format: msgpack lists over a ZeroMQ DEALER (frontend) / ROUTER (engine) pair.

Frontend → engine: ``[HELLO, pid]``, ``[ADD, request_id, prompt_token_ids, max_tokens]``, ``[ABORT, request_id]``,
``[STATS, frontend_snapshot | None, reply: bool]``.
Engine → frontend: ``[HELLO, engine_pid]``, ``[OUT, [[request_id, token_id, finished], ...], running, waiting,
kv_usage]``, ``[STATS, engine_snapshot, {frontend_pid: frontend_snapshot}]``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import msgpack

HELLO, ADD, ABORT, STATS, OUT = "hello", "add", "abort", "stats", "out"


def pack(msg: list[Any]) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def unpack(data: bytes) -> list[Any]:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def new_address() -> str:
    """A private IPC endpoint, as vLLM uses between API server and EngineCore."""
    return f"ipc://{tempfile.gettempdir()}/loopprof-examples-{os.getpid()}-{os.urandom(4).hex()}.sock"
