"""What a py-spy stack means: which thread runs the event loop, whether it is idle, what work a sample is doing.

py-spy sees only Python frames (and native ones with ``--native``), so these rules look at module file names and
function names. Rules are plain data so that framework integrations (``loopprof.integrations.vllm``) can add
their own without code: ``FRAME_RULES: list[(category, filename_substring, function_substring_or_None)]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

# Categories of work that the report breaks out.
TOKENIZE = "tokenize"
DETOKENIZE = "detokenize"
CHAT_TEMPLATE = "chat_template"
GC = "gc"
ZMQ_MSGPACK = "zmq_msgpack"
LOOP_IDLE = "loop_idle"
TOKENIZATION_CATEGORIES = (TOKENIZE, DETOKENIZE, CHAT_TEMPLATE)


class Frame(NamedTuple):
    function: str
    filename: str
    line: int

    def where(self) -> str:
        """``module:function:line`` as the report writes slow callbacks."""
        return f"{module_name(self.filename)}:{self.function}:{self.line}"


Stack = tuple[Frame, ...]  # root first, leaf last
Rule = tuple[str, str, "str | None"]

# Checked in order; the outermost frame that matches any rule decides the sample's category, so that
# ``apply_chat_template`` (which renders jinja, then encodes) counts as chat templating and ``decode`` as
# detokenization even though both end in the same Rust tokenizer.
BASE_RULES: list[Rule] = [
    (CHAT_TEMPLATE, "", "apply_chat_template"),
    (CHAT_TEMPLATE, "jinja2/", None),
    (DETOKENIZE, "transformers/tokenization_utils", "decode"),
    (DETOKENIZE, "transformers/tokenization_utils", "convert_ids_to_tokens"),
    (TOKENIZE, "transformers/tokenization_utils", None),
    (DETOKENIZE, "tiktoken/", "decode"),
    (TOKENIZE, "tiktoken/", None),
    (DETOKENIZE, "tokenizers/", "decode"),
    (TOKENIZE, "tokenizers/", None),
    (GC, "", "gc_collect_main"),
    (GC, "", "gc_collect_with_callback"),
    (ZMQ_MSGPACK, "zmq/", None),
    (ZMQ_MSGPACK, "msgpack/", None),
]


def _integration_rules() -> list[Rule]:
    try:
        from loopprof.integrations import vllm  # type: ignore[attr-defined]
    except ImportError:
        return []
    rules = getattr(vllm, "FRAME_RULES", [])
    return [tuple(r) for r in rules if isinstance(r, (tuple, list)) and len(r) == 3]  # type: ignore[misc]


RULES: list[Rule] = [*_integration_rules(), *BASE_RULES]


def module_name(filename: str) -> str:
    """``…/site-packages/transformers/tokenization_utils.py`` → ``transformers.tokenization_utils``."""
    path = filename.replace("\\", "/")
    for marker in ("site-packages/", "dist-packages/", "/lib/python3"):
        idx = path.rfind(marker)
        if idx >= 0:
            path = path[idx + len(marker) :]
            if marker == "/lib/python3":
                path = path.split("/", 1)[1] if "/" in path else path
            break
    else:
        path = path.rsplit("/", 1)[-1]
    if path.endswith(".py"):
        path = path[:-3]
    return path.replace("/", ".").removesuffix(".__init__")


def _matches(frame: Frame, rule: Rule) -> bool:
    _, file_part, func_part = rule
    if file_part and file_part not in frame.filename.replace("\\", "/"):
        return False
    return func_part is None or func_part in frame.function


def category(stack: Stack, rules: Sequence[Rule] | None = None) -> str | None:
    """The work category of one sample, or ``None`` for uncategorised work."""
    for frame in stack:
        for rule in rules if rules is not None else RULES:
            if _matches(frame, rule):
                return rule[0]
    return None


# -- the event loop -------------------------------------------------------------------------------------------

_LOOP_FUNCS = ("run_forever", "_run_once", "run_until_complete")


def is_loop_frame(frame: Frame) -> bool:
    """A frame that runs an event loop: asyncio's own, ``asyncio.run`` (uvloop runs inside it) or uvloop's."""
    f = frame.filename.replace("\\", "/")
    if f.endswith("asyncio/runners.py") or "uvloop/" in f:
        return True
    return f.endswith("asyncio/base_events.py") and frame.function.rsplit(".", 1)[-1] in _LOOP_FUNCS


def loop_depth(stack: Stack) -> int | None:
    """Index of the innermost loop frame, or ``None`` when this stack does not run an event loop."""
    depth = None
    for i, frame in enumerate(stack):
        if is_loop_frame(frame):
            depth = i
    return depth


def is_loop_idle(stack: Stack) -> bool:
    """The loop thread is waiting for work: in the selector (asyncio) or inside uvloop's C loop with no Python
    callback on top (uvloop's loop is Cython, so its idle stack ends at the frame that started it)."""
    if not stack:
        return True
    leaf = stack[-1]
    if leaf.filename.replace("\\", "/").endswith("selectors.py") and leaf.function.endswith("select"):
        return True
    depth = loop_depth(stack)
    if depth is None:
        return False
    # A loop frame as the leaf: asyncio's own bookkeeping (cheap), or uvloop's C loop (idle or C callbacks).
    return depth == len(stack) - 1


def where(stack: Stack) -> str | None:
    """The frame a slow callback is charged to: the leaf, the line where the time went."""
    return stack[-1].where() if stack else None


# -- what a process's main thread is doing (to settle the role of a child process) -------------------------------

_WAIT_LEAVES: tuple[tuple[str, str], ...] = (
    ("threading.py", "wait"),
    ("queue.py", "get"),
    ("selectors.py", "select"),
    ("zmq/", ""),
    ("multiprocessing/connection.py", ""),
    ("socket.py", "recv"),
    ("socket.py", "accept"),
)


def is_waiting(stack: Stack) -> bool:
    """The leaf frame waits for input: a queue, a condition, a selector, a ZeroMQ or multiprocessing socket."""
    if not stack:
        return False
    leaf = stack[-1]
    f = leaf.filename.replace("\\", "/")
    return any(part in f and func in leaf.function for part, func in _WAIT_LEAVES)


def main_thread_kind(stack: Stack) -> str:
    """``"loop"`` (runs an event loop: a frontend), ``"waiting"`` (waits for input: an engine) or ``"working"``."""
    if loop_depth(stack) is not None:
        return "loop"
    return "waiting" if is_waiting(stack) else "working"
