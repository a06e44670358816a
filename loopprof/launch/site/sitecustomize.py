"""``loopprof run``'s bootstrap: this directory is put first on ``PYTHONPATH`` so every Python process that
COMMAND starts imports this file at interpreter start.

Cheap at start: it sends one line to the wrapper with the C ``_socket`` module ("this process has the
bootstrap") and puts a finder on ``sys.meta_path`` that waits for ``asyncio``. A process that never imports
``asyncio`` never runs an event loop and never loads the agent. When ``asyncio`` is imported, the
agent is loaded from the wrapper's own installation (``LOOPPROF_RUN_ROOT``, without putting that
installation's other packages on ``sys.path``) and :func:`loopprof.launch.bootstrap.install` is called, before
any loop can run.

Rules, because this runs inside someone else's program: nothing happens unless ``LOOPPROF_RUN_SOCKET`` is set;
it never raises and never prints (a failure is sent to the wrapper, which names the process in its report);
and it then runs the ``sitecustomize`` that was next on the path, so an existing one keeps working. The syntax
stays valid on old Pythons (even 2.7): a ``SyntaxError`` here would make ``site`` print to the program's stderr.
"""

# ruff: noqa: RUF005, SIM105, UP004, UP031, UP036  (this file must parse and run harmlessly on any Python that reads it)

import os
import sys

_LOOPPROF_STATE = {"socket": os.environ.get("LOOPPROF_RUN_SOCKET"), "done": False}


def _loopprof_send(line):
    """One JSON line to the wrapper with the C socket module only (no ``json``/``socket`` import cost)."""
    try:
        import _socket

        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(1.0)
            sock.connect(_LOOPPROF_STATE["socket"])
            sock.sendall(line.encode("utf-8"))
        finally:
            sock.close()
    except Exception:
        pass


def _loopprof_quote(text):
    return '"%s"' % str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _loopprof_message(kind, extra):
    head = '{"type":"%s","pid":%d,"ppid":%d,"python":"%d.%d.%d","executable":%s' % (
        (kind, os.getpid(), os.getppid()) + tuple(sys.version_info[:3]) + (_loopprof_quote(sys.executable),)
    )
    return head + extra + "}\n"


def _loopprof_fail(error):
    _LOOPPROF_STATE["done"] = True
    _loopprof_send(_loopprof_message("failed", ',"error":%s' % _loopprof_quote(error)))


def _loopprof_load(root):
    """Import ``loopprof.launch.bootstrap`` from ``root`` only, whatever else is on ``sys.path``."""
    import importlib

    if "loopprof" not in sys.modules:
        import importlib.machinery
        import importlib.util

        spec = importlib.machinery.PathFinder.find_spec("loopprof", [root])
        if spec is None:
            raise ImportError("loopprof is not readable at %s" % root)
        module = importlib.util.module_from_spec(spec)
        sys.modules["loopprof"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["loopprof"]
            raise
    return importlib.import_module("loopprof.launch.bootstrap")


def _loopprof_start():
    """``asyncio`` was just imported: an event loop may follow, so install the agent now."""
    if _LOOPPROF_STATE["done"]:
        return
    _LOOPPROF_STATE["done"] = True
    try:
        sys.meta_path.remove(_LOOPPROF_WATCH)
    except ValueError:
        pass
    try:
        # install() never raises; when it fails it has already told the wrapper why
        _loopprof_load(os.environ.get("LOOPPROF_RUN_ROOT", "")).install(_LOOPPROF_STATE["socket"])
    except Exception as exc:
        _loopprof_fail("%s: %s" % (type(exc).__name__, exc))


class _LoopprofLoader(object):
    """Runs the real loader, then starts the agent."""

    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        _loopprof_start()

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _LoopprofWatch(object):
    """A ``sys.meta_path`` finder that only reacts to ``asyncio``; every other import pays one comparison."""

    def find_spec(self, name, path=None, target=None):
        if name != "asyncio" or _LOOPPROF_STATE["done"]:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _LoopprofLoader(spec.loader)
                return spec
        return None


_LOOPPROF_WATCH = _LoopprofWatch()


def _loopprof_boot():
    if not _LOOPPROF_STATE["socket"]:
        return
    try:
        if sys.version_info < (3, 10):
            _loopprof_fail(
                "Python %d.%d is too old for the loopprof agent (needs 3.10 or newer)" % sys.version_info[:2]
            )
            return
        if "asyncio" in sys.modules:
            _loopprof_start()
            return
        # Say we are here now (sub-millisecond): a process killed before it imports asyncio, or that never
        # does, is then not reported as "missing".
        _loopprof_send(_loopprof_message("hello", ',"snapshot":null,"agent":"armed"'))
        sys.meta_path.insert(0, _LOOPPROF_WATCH)
    except Exception as exc:
        _loopprof_fail("%s: %s" % (type(exc).__name__, exc))


def _loopprof_chain():
    """Run the next ``sitecustomize`` on the path (as opentelemetry-instrument does), as if we were not here."""
    here = os.path.dirname(os.path.abspath(__file__))
    ours = sys.modules.pop("sitecustomize", None)
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if os.path.abspath(p or os.curdir) != here]
    try:
        try:
            import sitecustomize  # noqa: F401  (the next one, if there is one)
        except ImportError as exc:
            if getattr(exc, "name", "sitecustomize") != "sitecustomize":
                raise
    finally:
        sys.path[:] = saved
        if "sitecustomize" not in sys.modules and ours is not None:
            sys.modules["sitecustomize"] = ours


_loopprof_boot()
_loopprof_chain()
