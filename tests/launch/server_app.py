"""A small real multi-process server for the ``loopprof run`` end-to-end test, shaped like vLLM.

``python server_app.py PORT OUTDIR`` starts an engine child (its command line names it ``EngineCore``; it waits
on a socket, i.e. idle) and ``uvicorn --workers 2`` API-server processes whose handler burns CPU on the event
loop (a saturated frontend). Every 3rd request runs ``gc.collect(0)``; each worker counts its own collections
with its own ``gc.callbacks`` hook and writes the count to ``OUTDIR/gc-PID.json`` at shutdown: the ground truth.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import socket
import subprocess
import sys

OUTDIR = os.environ.get("LOOPPROF_TEST_OUTDIR", "")
_own = {"collections": 0, "requests": 0}


def _count(phase: str, info: dict) -> None:
    if phase == "stop":
        _own["collections"] += 1


def _write_own_count() -> None:
    if OUTDIR:
        with open(os.path.join(OUTDIR, f"gc-{os.getpid()}.json"), "w") as fh:
            json.dump({**_own, "gc_enabled": gc.isenabled()}, fh)


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                gc.callbacks.append(_count)
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                _write_own_count()  # not atexit: uvicorn re-raises SIGTERM after shutdown, skipping atexit
                await send({"type": "lifespan.shutdown.complete"})
                return
    _own["requests"] += 1
    digest = b"x"
    for _ in range(6000):  # ~6-10 ms of CPU on the loop: the frontend saturates under concurrent load
        digest = hashlib.sha256(digest).digest()
    if _own["requests"] % 3 == 0:
        gc.collect(0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


def engine() -> None:
    """Wait for work that never comes: parked in a poll, as an idle engine is."""
    import select

    a, _b = socket.socketpair()
    try:
        while True:
            select.select([a], [], [], 1.0)
    except KeyboardInterrupt:
        pass


def main() -> None:
    port = int(sys.argv[1])
    eng = subprocess.Popen([sys.executable, __file__, "engine", "EngineCore"])
    try:
        import uvicorn

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        uvicorn.run("server_app:app", host="127.0.0.1", port=port, workers=2, log_level="warning", lifespan="on")
    finally:
        eng.terminate()
        eng.wait(10)


if __name__ == "__main__":
    if sys.argv[1] == "engine":
        engine()
    else:
        main()
