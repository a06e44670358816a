"""``python -m examples.stack [--scenario NAME] [--port 8000] [--SETTING VALUE ...]``: run the stack until
Ctrl-C / SIGTERM.

One API server (default): this process is the API server and EngineCore is its child, as with ``vllm serve``.
``--api-server-count N``: this process is a launcher that starts EngineCore and N API servers, all its children,
each on its own listening socket bound to the same port with ``SO_REUSEPORT``, so the kernel spreads connections
among them by hash. (vLLM hands all API servers one shared socket; with keep-alive clients the first server to
wake can then accept every connection, which leaves the others idle.)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time

from examples.scenarios import SCENARIOS, get_scenario
from examples.stack import protocol
from examples.stack.engine import start_engine
from examples.stack.settings import StackSettings, add_flags, overrides_from_args
from examples.stack.tokenizer import ensure_tokenizer

# The launcher imports nothing heavy (no transformers, no FastAPI): its API-server children do.


def listen_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening socket, inheritable so an API-server child can serve on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def parse_settings(argv: list[str] | None) -> StackSettings:
    parser = argparse.ArgumentParser(prog="python -m examples.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default=None, help="start from a named scenario")
    add_flags(parser, skip=("scenario",))
    args = parser.parse_args(argv)
    base = get_scenario(args.scenario).stack if args.scenario else StackSettings()
    settings = dataclasses.replace(base, **overrides_from_args(args))
    try:
        settings.validate()
    except ValueError as exc:
        parser.error(str(exc))
    return settings


def _stop(procs: list[subprocess.Popen[bytes]], timeout_s: float = 5.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_single(settings: StackSettings, sock: socket.socket) -> None:
    from examples.stack.api_server import serve

    ensure_tokenizer(settings.vocab_size)  # train before the engine starts spinning, on a cold cache
    address = protocol.new_address()
    engine = start_engine(settings, address)
    try:
        serve(settings, address, sock)
    finally:
        _stop([engine])


def run_launcher(settings: StackSettings, sock: socket.socket) -> None:
    ensure_tokenizer(settings.vocab_size)  # once here, so the API servers find it cached
    address = protocol.new_address()
    procs = [start_engine(settings, address)]
    port = sock.getsockname()[1]
    socks = [sock] + [listen_socket(settings.host, port, reuse_port=True) for _ in range(settings.api_server_count - 1)]
    for own in socks:
        argv = [
            sys.executable,
            "-m",
            "examples.stack.api_server",
            settings.to_json(),
            address,
            str(own.fileno()),
            str(os.getpid()),
        ]
        procs.append(subprocess.Popen(argv, pass_fds=(own.fileno(),)))
    for own in socks:
        own.close()

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
        print("examples.stack: a child process exited; stopping the others", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(procs)


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    try:
        sock = listen_socket(settings.host, settings.port, reuse_port=settings.api_server_count > 1)
    except OSError as exc:
        sys.exit(f"examples.stack: cannot listen on {settings.host}:{settings.port}: {exc.strerror}; pick --port")
    try:
        if settings.api_server_count == 1:
            run_single(settings, sock)
        else:
            run_launcher(settings, sock)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
