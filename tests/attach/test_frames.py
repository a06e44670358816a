from loopprof.attach import frames
from loopprof.attach.frames import Frame

RUNNER = Frame("Runner.run", "/usr/lib/python3.11/asyncio/runners.py", 118)
SELECT = Frame("EpollSelector.select", "/usr/lib/python3.11/selectors.py", 468)
ONCE = Frame("BaseEventLoop._run_once", "/usr/lib/python3.11/asyncio/base_events.py", 1922)
HANDLER = Frame("handle", "/srv/app.py", 10)
ENCODE = Frame("PreTrainedTokenizerFast._encode_plus", "/x/site-packages/transformers/tokenization_utils_fast.py", 5)
DECODE = Frame("PreTrainedTokenizerFast._decode", "/x/site-packages/transformers/tokenization_utils_fast.py", 9)
JINJA = Frame("render", "/x/site-packages/jinja2/environment.py", 1)


def test_categories_outermost_rule_wins() -> None:
    assert frames.category((HANDLER, ENCODE)) == frames.TOKENIZE
    assert frames.category((HANDLER, DECODE)) == frames.DETOKENIZE
    apply = Frame("apply_chat_template", "/x/site-packages/transformers/tokenization_utils_base.py", 1)
    assert frames.category((HANDLER, apply, JINJA)) == frames.CHAT_TEMPLATE
    assert frames.category((HANDLER,)) is None


def test_loop_idle_asyncio_and_uvloop() -> None:
    assert frames.is_loop_idle((RUNNER, ONCE, SELECT))
    assert not frames.is_loop_idle((RUNNER, ONCE, HANDLER))
    assert frames.is_loop_idle((RUNNER,))  # uvloop: its Cython loop has no Python frame above asyncio.run
    assert not frames.is_loop_idle((RUNNER, HANDLER))
    assert frames.main_thread_kind((RUNNER, HANDLER)) == "loop"
    zmq = Frame("Socket.recv_multipart", "/x/site-packages/zmq/sugar/socket.py", 800)
    assert frames.main_thread_kind((HANDLER, zmq)) == "waiting"


def test_where_is_module_function_line() -> None:
    assert ENCODE.where() == "transformers.tokenization_utils_fast:PreTrainedTokenizerFast._encode_plus:5"
    assert SELECT.where() == "selectors:EpollSelector.select:468"
