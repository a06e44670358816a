"""``loopprof run``'s bootstrap: this directory is put first on ``PYTHONPATH`` so every Python process that
COMMAND starts imports this file at interpreter start and installs the loopprof agent.

Rules, because this runs inside someone else's program: it does nothing unless ``LOOPPROF_RUN_SOCKET`` is set;
it never raises and never prints (a failure is reported to the wrapper, which names the process in its
report); it loads loopprof from the wrapper's own installation (``LOOPPROF_RUN_ROOT``) without putting that
installation's other packages on ``sys.path``; and it then runs the ``sitecustomize`` that was next on the path,
so an existing one keeps working. The syntax stays valid on old Pythons (even 2.7): a ``SyntaxError`` here
would make ``site`` print to the program's stderr.
"""

# ruff: noqa: UP031, UP036  (%-formatting and the version check must work on any Python that reads this file)

import os
import sys


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


def _loopprof_report_failure(path, error):
    try:
        import json
        import socket

        msg = {
            "type": "failed",
            "error": error,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "python": ".".join(map(str, sys.version_info[:3])),
            "executable": sys.executable,
            "argv": list(getattr(sys, "argv", [])),
        }
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(1.0)
            sock.connect(path)
            sock.sendall((json.dumps(msg) + "\n").encode("utf-8"))
        finally:
            sock.close()
    except Exception:
        pass


def _loopprof_boot():
    path = os.environ.get("LOOPPROF_RUN_SOCKET")
    if not path:
        return
    try:
        if sys.version_info < (3, 10):
            raise RuntimeError(
                "Python %d.%d is too old for the loopprof agent (needs 3.10 or newer)" % sys.version_info[:2]
            )
        _loopprof_load(os.environ.get("LOOPPROF_RUN_ROOT", "")).install(path)
    except Exception as exc:
        _loopprof_report_failure(path, "%s: %s" % (type(exc).__name__, exc))


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
