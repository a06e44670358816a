"""Shared fixtures. The autouse ``no_leftovers`` fixture fails any test that leaves behind a ``gc.callbacks``
entry, a thread, a patched method or an import hook: an embedded profiler must remove everything it adds."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

LOOP_KINDS = ("asyncio", "uvloop")


def _patched_now() -> list[str]:
    out = []
    if hasattr(asyncio.BaseEventLoop.run_forever, "__loopprof_wrapped__"):
        out.append("asyncio.BaseEventLoop.run_forever")
    try:
        import sys

        uv = sys.modules.get("uvloop")
        if uv is not None and "run_forever" in vars(uv.Loop):
            out.append("uvloop.Loop.run_forever")
        from loopprof.probes import tokenization

        out += tokenization.patched()
        from loopprof import _import_hook

        if _import_hook.installed():
            out.append("loopprof import hook in sys.meta_path")
    except ImportError:
        pass
    return out


@pytest.fixture(autouse=True)
def no_leftovers() -> Any:
    gc_before = list(gc.callbacks)
    threads_before = set(threading.enumerate())
    yield
    try:
        import loopprof

        loopprof.stop()  # the process-wide agent a test may have started
    except ImportError:
        pass
    deadline = time.monotonic() + 3.0
    extra: set[threading.Thread] = set()
    while time.monotonic() < deadline:
        extra = {t for t in threading.enumerate() if t not in threads_before and t.is_alive()}
        if not extra:
            break
        time.sleep(0.02)
    problems = []
    if list(gc.callbacks) != gc_before:
        problems.append(f"gc.callbacks changed: {gc.callbacks!r}")
    if extra:
        problems.append(f"threads left running: {sorted(t.name for t in extra)}")
    patched = _patched_now()
    if patched:
        problems.append(f"still patched: {patched}")
    if problems:
        gc.callbacks[:] = gc_before
        pytest.fail("test left things behind: " + "; ".join(problems))


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_on(kind: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main()`` to completion on a fresh loop of that kind, then close the loop."""
    loop = new_loop(kind)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def spin(seconds: float) -> float:
    """Burn Python on this thread for ``seconds``; return the time actually spent (the test's ground truth)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass
    return time.perf_counter() - t0


@pytest.fixture(scope="session")
def hf_tokenizer() -> Any:
    """A real byte-level BPE trained offline in well under a second, wrapped as a transformers fast tokenizer."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    words = [f"word{i} token{i % 37} stream{i % 11} latency{i % 5}" for i in range(2000)]
    tok = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["[UNK]", "<s>", "</s>"])
    tok.train_from_iterator(words, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>")
    fast.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    return fast
