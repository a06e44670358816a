"""LoopProfMiddleware on real loops: through httpx.ASGITransport (no server) and under a real uvicorn."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from loopprof.agent import Agent
from loopprof.asgi import LoopProfMiddleware, RequestStats
from loopprof.config import AgentConfig
from tests.conftest import run_on

FIRST_BYTE_S = 0.05


class Boom(Exception):
    pass


async def app(scope, receive, send):  # a plain ASGI-3 app: no framework
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/boom":
        raise Boom("from the app")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await asyncio.sleep(FIRST_BYTE_S)
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    await asyncio.sleep(0.05)
    await send({"type": "http.response.body", "body": b" last"})


def _agent() -> Agent:
    return Agent(AgentConfig(gil=False, tokenization=False, gc=False))


def test_ttfb_in_flight_and_app_errors_through_asgi_transport() -> None:
    agent = _agent()
    wrapped = LoopProfMiddleware(app, agent=agent)

    async def main():
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.get("/")  # the first request starts and attaches the agent
            first = agent.snapshot()
            responses = await asyncio.gather(*(client.get("/") for _ in range(10)))
            with pytest.raises(Boom, match="from the app") as caught:
                await client.get("/boom")
            return r, responses, first, agent.report(first), caught.value

    try:
        r, responses, _, report, err = run_on("asyncio", main)
    finally:
        agent.stop()
    assert r.text == "first last" and all(x.status_code == 200 for x in responses)
    assert type(err) is Boom  # unchanged: the same class, the same message
    req = report.frontend.requests
    assert req.count == 11  # ten concurrent ones and the one that raised
    assert req.in_flight_max == 10
    assert agent.requests.in_flight == 0  # the failing request was taken out too
    # 0.99: a percentile is read back from its histogram bucket (within 0.8%)
    assert req.ttfb_ms.p50 is not None and 0.99 * FIRST_BYTE_S * 1000 <= req.ttfb_ms.p50 < FIRST_BYTE_S * 1000 + 40
    assert report.frontend.loop.loop_kind == "asyncio"


class BrokenStats(RequestStats):
    def begin(self) -> None:
        raise RuntimeError("loopprof bug")


class BrokenAgent:
    requests = None

    def start(self) -> None:
        raise RuntimeError("loopprof cannot start")


@pytest.mark.parametrize("broken", ["stats", "agent"])
def test_a_failure_inside_loopprof_never_reaches_the_app(broken: str) -> None:
    agent = _agent()
    if broken == "stats":
        agent.requests = BrokenStats()
        wrapped = LoopProfMiddleware(app, agent=agent)
    else:
        wrapped = LoopProfMiddleware(app, agent=BrokenAgent())

    async def main():
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get("/") for _ in range(3)]

    try:
        responses = run_on("asyncio", main)
    finally:
        agent.stop()
    assert [r.text for r in responses] == ["first last"] * 3
    assert wrapped.stats is None  # it stopped measuring instead of failing again


@pytest.mark.slow
def test_under_real_uvicorn_with_uvloop() -> None:
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("uvloop")
    agent = _agent()
    config = uvicorn.Config(
        LoopProfMiddleware(app, agent=agent), host="127.0.0.1", port=0, loop="uvloop", lifespan="on", log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        assert agent.loop is not None, "lifespan startup should start and attach the agent"
        first = agent.snapshot()

        async def load():
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                return await asyncio.gather(*(client.get("/") for _ in range(8)))

        responses = asyncio.run(load())
        report = agent.report(first)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        agent.stop()
    assert not thread.is_alive()
    assert all(r.text == "first last" for r in responses)
    req = report.frontend.requests
    assert req.count == 8
    assert req.in_flight_max is not None and 2 <= req.in_flight_max <= 8
    assert req.ttfb_ms.p50 is not None and req.ttfb_ms.p50 >= 0.99 * FIRST_BYTE_S * 1000
    assert report.frontend.loop.loop_kind == "uvloop"
    assert report.frontend.loop.busy_method == "syscall_sampling"
