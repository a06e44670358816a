"""Why a target cannot be profiled, as one line that says what to do (CONTRACT §1, exit status 1).

Every check runs before sampling starts, so a user never waits 30 seconds to learn that py-spy is missing or that
the kernel forbids reading the target's memory.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import psutil

from loopprof.attach import pyspy

PTRACE_SCOPE = Path("/proc/sys/kernel/yama/ptrace_scope")
SUPPORTED = "CPython 3.8–3.13"
_VERSION = re.compile(r"Python v(\d+\.\d+(?:\.\d+)?\S*)")


class AttachError(Exception):
    """A target that cannot be profiled; ``str()`` is the one-line reason with the fix."""


def require_pyspy() -> str:
    path = pyspy.find_pyspy()
    if path is None:
        raise AttachError("py-spy is not installed (loopprof attach samples with it): pip install py-spy")
    return path


def no_such_process(pid: int) -> AttachError:
    return AttachError(f"no such process: {pid} (find the API server's PID with `pgrep -af 'uvicorn|vllm|python'`)")


def permission_denied(pid: int) -> AttachError:
    scope = _ptrace_scope()
    setting = f"kernel.yama.ptrace_scope is {scope}; " if scope is not None else ""
    return AttachError(
        f"permission denied reading process {pid}: {setting}run loopprof as the target's user with "
        "kernel.yama.ptrace_scope=0 (sudo sysctl kernel.yama.ptrace_scope=0), or as root / with CAP_SYS_PTRACE "
        "(docker run --cap-add SYS_PTRACE; Kubernetes securityContext.capabilities.add: [SYS_PTRACE])"
    )


def _ptrace_scope() -> str | None:
    try:
        return PTRACE_SCOPE.read_text().strip()
    except OSError:
        return None


def _is_rust_frontend(pid: int) -> bool:
    try:
        from loopprof.integrations.vllm import is_rust_frontend

        return is_rust_frontend(psutil.Process(pid))
    except (ImportError, psutil.Error):
        return False


def _describe(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        return f"{pid} ({proc.name()})"
    except psutil.Error:
        return str(pid)


def explain_pyspy_failure(pid: int, stderr: str) -> AttachError:
    """Map py-spy's error text to advice. py-spy's messages are the only place some failures are visible."""
    text = stderr
    lower = text.lower()
    denied = "permission denied" in lower or "operation not permitted" in lower or "EPERM" in text
    if denied and psutil.pid_exists(pid):
        return permission_denied(pid)
    if "Unsupported version of Python" in text or "Unsupported Python version" in text:
        m = re.search(r"Unsupported version of Python: ?(\S+)", text)
        version = f" {m.group(1)}" if m else ""
        return AttachError(
            f"process {_describe(pid)} runs Python{version}, which this py-spy cannot read "
            f"(supported: {SUPPORTED}): upgrade py-spy with `pip install -U py-spy`, or use `loopprof run` / the "
            "embedded agent, which work on any version"
        )
    if "Failed to find python version" in text or "Failed to find a python interpreter" in text:
        if _is_rust_frontend(pid):
            return AttachError(
                f"process {_describe(pid)} is vLLM's Rust frontend (VLLM_USE_RUST_FRONTEND=1), not Python: there is "
                "no Python event loop, GIL or GC to profile; read the engine from its /metrics (vllm:* gauges)"
            )
        return AttachError(
            f"process {_describe(pid)} is not a Python process: pass the PID of the Python API server "
            "(e.g. the uvicorn or `vllm serve` process)"
        )
    if not psutil.pid_exists(pid) or "No such file or directory" in text or "No such process" in text:
        return no_such_process(pid)
    first = next((ln for ln in text.splitlines() if ln.startswith("Error:")), text.strip().split("\n")[0])
    return AttachError(f"py-spy cannot read process {pid}: {first.removeprefix('Error:').strip()}")


TRANSIENT = "Failed to get stack traces"  # py-spy --nonblocking read the interpreter while it changed


def check_target(pid: int, pyspy_path: str) -> str | None:
    """Check that py-spy can read ``pid``; return its Python version (``"3.11.7"``) or raise :class:`AttachError`."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            raise AttachError(f"process {pid} has exited (zombie): nothing to profile")
    except psutil.NoSuchProcess:
        raise no_such_process(pid) from None
    except psutil.AccessDenied:
        raise permission_denied(pid) from None
    for attempt in range(pyspy.DUMP_ATTEMPTS):
        try:
            done = pyspy.dump_text(pyspy_path, pid)
        except subprocess.TimeoutExpired:
            raise AttachError(
                f"py-spy did not answer within 15 s for process {pid}; is the machine overloaded?"
            ) from None
        except OSError as exc:
            raise AttachError(
                f"cannot run py-spy at {pyspy_path}: {exc.strerror}; reinstall with pip install py-spy"
            ) from None
        # A non-blocking read races a busy interpreter now and then; only a failure that repeats is an answer.
        if done.returncode == 0 or TRANSIENT not in done.stderr or attempt == pyspy.DUMP_ATTEMPTS - 1:
            break
        time.sleep(0.05)
    if done.returncode != 0:
        raise explain_pyspy_failure(pid, done.stderr)
    m = _VERSION.search(done.stdout)
    return m.group(1).split()[0] if m else None
