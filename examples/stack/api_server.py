"""One API-server process: load the tokenizer, build the app, serve on a listening socket it is handed.

Started directly by ``python -m examples.stack`` (one API server), or by the launcher as
``python -m examples.stack.api_server SETTINGS_JSON ENGINE_ADDRESS FD LAUNCHER_PID`` (several sharing one socket,
the way vLLM's ``--api-server-count`` shares its listening socket).
"""

from __future__ import annotations

import socket
import sys

import uvicorn

from examples.stack.api import build_app
from examples.stack.settings import StackSettings
from examples.stack.tokenizer import load_tokenizer


def serve(settings: StackSettings, engine_address: str, sock: socket.socket, launcher_pid: int | None = None) -> None:
    app = build_app(settings, engine_address, load_tokenizer(settings.vocab_size), launcher_pid)
    config = uvicorn.Config(
        app,
        loop=settings.loop,
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    settings_json, address, fd, launcher_pid = sys.argv[1:] if argv is None else argv
    serve(StackSettings.from_json(settings_json), address, socket.socket(fileno=int(fd)), int(launcher_pid))


if __name__ == "__main__":
    main()
