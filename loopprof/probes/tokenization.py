"""Tokenization time, per operation, thread and on/off the event loop, by instrumenting the tokenizers.

Patched automatically (now, and through a post-import hook for modules imported after ``start()``):

* HF ``transformers``: ``__call__``, ``encode``, ``decode``, ``batch_decode``, ``apply_chat_template``,
  ``convert_ids_to_tokens`` on every ``PreTrainedTokenizerBase`` subclass that defines them itself.
* ``tiktoken.Encoding``: the single-text ``encode``/``encode_ordinary``/``decode``/``decode_bytes``; the
  ``*_batch`` variants fan out to those in a thread pool, so each worker's own time is what gets counted.
* vLLM's ``vllm.v1.engine.detokenizer`` classes (``update``/``decode_next``), when vLLM is present.
* Custom code: :func:`tokenize_span` as a context manager or decorator.

Only the outermost call per thread is timed (``apply_chat_template`` calling ``encode`` counts once). Each thread
accumulates into its own preallocated counters (no lock on the hot path); :func:`snapshot` sums them. When the
probe is off, a patched method costs one global read.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
from collections.abc import Callable
from time import perf_counter_ns
from types import ModuleType
from typing import Any, TypeVar

from loopprof import _import_hook

log = logging.getLogger("loopprof")

OPS = ("encode", "decode", "chat_template", "detokenize", "other")
HF_METHODS = {
    "__call__": "encode",
    "encode": "encode",
    "decode": "decode",
    "batch_decode": "decode",
    "apply_chat_template": "chat_template",
    "convert_ids_to_tokens": "decode",
}
TIKTOKEN_METHODS = {"encode": "encode", "encode_ordinary": "encode", "decode": "decode", "decode_bytes": "decode"}
VLLM_METHODS = {"update": "detokenize", "decode_next": "detokenize"}
MAX_THREADS = 256

F = TypeVar("F", bound=Callable[..., Any])


class _ThreadAcc:
    """One thread's counters: op -> [calls, total_ns, on_loop_ns]. Written only by its own thread."""

    __slots__ = ("depth", "name", "ops", "t0")

    def __init__(self, name: str) -> None:
        self.depth = 0
        self.t0 = 0
        self.name = name
        self.ops: dict[str, list[int]] = {op: [0, 0, 0] for op in OPS}


_enabled = False
_loop_ident: int | None = None
_local = threading.local()
_registry: list[_ThreadAcc] = []
_patched: list[tuple[type, str, Any]] = []  # (class, attribute, original) to restore
_unhooks: list[Callable[[], None]] = []


def _acc() -> _ThreadAcc:
    try:
        return _local.acc
    except AttributeError:
        acc = _ThreadAcc(threading.current_thread().name)
        _local.acc = acc
        if len(_registry) < MAX_THREADS:
            _registry.append(acc)  # list.append is atomic under the GIL
        return acc


def _finish(acc: _ThreadAcc, op: str, elapsed_ns: int) -> None:
    try:
        counters = acc.ops.get(op)
        if counters is None:
            counters = acc.ops.setdefault(op, [0, 0, 0])
        counters[0] += 1
        counters[1] += elapsed_ns
        if threading.get_ident() == _loop_ident:
            counters[2] += elapsed_ns
    except Exception:  # never raise into the tokenizer's caller
        pass


def _wrap(fn: F, op: str) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _enabled:
            return fn(*args, **kwargs)
        acc = _acc()
        if acc.depth:
            return fn(*args, **kwargs)
        acc.depth = 1
        t0 = perf_counter_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            acc.depth = 0
            _finish(acc, op, perf_counter_ns() - t0)

    wrapper.__loopprof_wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


class tokenize_span:  # lower-case: used like a function
    """Time a custom tokenizer: ``with tokenize_span("encode"): ...`` or ``@tokenize_span("decode")``.

    State lives in the calling thread's accumulator, so one instance may be used by many threads at once.
    """

    def __init__(self, op: str = "encode") -> None:
        self.op = op

    def __enter__(self) -> tokenize_span:
        if _enabled:
            acc = _acc()
            acc.depth += 1
            if acc.depth == 1:
                acc.t0 = perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        if _enabled:
            acc = _acc()
            if acc.depth > 0:
                acc.depth -= 1
                if acc.depth == 0 and acc.t0:
                    _finish(acc, self.op, perf_counter_ns() - acc.t0)
                    acc.t0 = 0

    def __call__(self, fn: F) -> F:
        return _wrap(fn, self.op)


def _patch_class(cls: type, methods: dict[str, str]) -> None:
    for name, op in methods.items():
        original = cls.__dict__.get(name)
        if original is None or not callable(original) or hasattr(original, "__loopprof_wrapped__"):
            continue
        try:
            setattr(cls, name, _wrap(original, op))
        except (TypeError, AttributeError):  # extension types refuse new attributes
            continue
        _patched.append((cls, name, original))


def _subclasses(base: type) -> list[type]:
    seen: list[type] = [base]
    i = 0
    while i < len(seen):
        for sub in seen[i].__subclasses__():
            if sub not in seen:
                seen.append(sub)
        i += 1
    return seen


def _on_transformers(module: ModuleType) -> None:
    base_mod = sys.modules.get("transformers.tokenization_utils_base")
    base = getattr(base_mod, "PreTrainedTokenizerBase", None)
    if base is None:
        return
    for cls in _subclasses(base):
        _patch_class(cls, HF_METHODS)


def _on_tiktoken(module: ModuleType) -> None:
    enc = getattr(module, "Encoding", None)
    if isinstance(enc, type):
        _patch_class(enc, TIKTOKEN_METHODS)


def _on_vllm_detokenizer(module: ModuleType) -> None:
    for obj in list(vars(module).values()):
        if isinstance(obj, type) and obj.__module__ == module.__name__:
            _patch_class(obj, VLLM_METHODS)


def _is_transformers_tokenizer_module(name: str) -> bool:
    return name.startswith("transformers.") and "tokenization" in name


_HOOKS: tuple[tuple[Callable[[str], bool], Callable[[ModuleType], None]], ...] = (
    (_is_transformers_tokenizer_module, _on_transformers),
    ("tiktoken.core".__eq__, _on_tiktoken),
    ("vllm.v1.engine.detokenizer".__eq__, _on_vllm_detokenizer),
)


def set_loop_thread(ident: int | None) -> None:
    """Which thread runs the event loop (``threading.get_ident()``), for the on-loop split."""
    global _loop_ident
    _loop_ident = ident


def start() -> None:
    """Patch what is loaded and hook later imports. Idempotent."""
    global _enabled
    if not _unhooks:
        for matcher, callback in _HOOKS:
            _unhooks.append(_import_hook.when_imported(matcher, callback))
    _enabled = True


def stop() -> None:
    """Restore every patched method and remove the import hooks."""
    global _enabled
    _enabled = False
    while _unhooks:
        _unhooks.pop()()
    while _patched:
        cls, name, original = _patched.pop()
        current = cls.__dict__.get(name)
        if getattr(current, "__loopprof_wrapped__", None) is original:
            with contextlib.suppress(TypeError, AttributeError):
                setattr(cls, name, original)


def patched() -> list[str]:
    """``module.Class.method`` of every method currently patched (tests check none is left after stop)."""
    return [f"{c.__module__}.{c.__qualname__}.{n}" for c, n, _ in _patched]


def snapshot() -> dict[str, Any]:
    """Cumulative totals over all threads: ``{"by_operation": {op: {...}}, "by_thread": {name: ms}}``."""
    by_op: dict[str, dict[str, float]] = {}
    by_thread: dict[str, float] = {}
    for acc in list(_registry):
        thread_ns = 0
        for op, (calls, total_ns, on_loop_ns) in list(acc.ops.items()):
            if not calls:
                continue
            entry = by_op.setdefault(op, {"calls": 0, "total_ms": 0.0, "on_loop_ms": 0.0})
            entry["calls"] += calls
            entry["total_ms"] += total_ns / 1e6
            entry["on_loop_ms"] += on_loop_ns / 1e6
            thread_ns += total_ns
        if thread_ns:
            by_thread[acc.name] = by_thread.get(acc.name, 0.0) + thread_ns / 1e6
    return {"method": "instrumented", "by_operation": by_op, "by_thread": by_thread}
