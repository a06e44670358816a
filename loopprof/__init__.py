"""loopprof: is your Python LLM API frontend or your GPU engine the bottleneck?

The facade of the in-process agent. Importing this module is cheap: the agent and its probes are imported on
first use.

    import loopprof
    loopprof.start()                 # inside a running loop it attaches at once; otherwise to the next loop run
    app = loopprof.LoopProfMiddleware(app)   # or: per-request TTFB / in-flight, starts the agent itself
    with loopprof.tokenize_span("encode"): ...   # time a custom tokenizer
    report = loopprof.get_agent().report()
    loopprof.stop()

``LOOPPROF_JSON=path`` writes the report at ``stop()`` or interpreter exit; other ``LOOPPROF_*`` variables are in
:mod:`loopprof.config`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LoopProfMiddleware", "get_agent", "start", "stop", "tokenize_span"]

if TYPE_CHECKING:
    from loopprof.agent import Agent
    from loopprof.asgi import LoopProfMiddleware

_agent: Agent | None = None
_agent_lock = threading.Lock()


def get_agent() -> Agent:
    """The process-wide agent (created, not started, on first call; configured from ``LOOPPROF_*``)."""
    global _agent
    if _agent is None:
        with _agent_lock:
            if _agent is None:
                from loopprof.agent import Agent

                _agent = Agent()
    return _agent


def start() -> Agent:
    """Start the process-wide agent; attach to the running loop if called inside one. Never raises."""
    agent = get_agent()
    agent.start()
    return agent


def stop() -> None:
    """Stop the process-wide agent and remove everything it installed (writes ``LOOPPROF_JSON``)."""
    global _agent
    with _agent_lock:
        agent, _agent = _agent, None
    if agent is not None:
        agent.stop()


def tokenize_span(op: str = "encode") -> Any:
    """Context manager / decorator that counts the enclosed work as tokenization ``op``."""
    from loopprof.probes.tokenization import tokenize_span as span

    return span(op)


def __getattr__(name: str) -> Any:
    if name == "LoopProfMiddleware":
        from loopprof.asgi import LoopProfMiddleware

        return LoopProfMiddleware
    raise AttributeError(f"module 'loopprof' has no attribute {name!r}")
