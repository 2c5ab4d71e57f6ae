"""Functions that live at an HTTP URL, registered by the real iii-sdk with HttpInvocationConfig:
the engine calls the URL itself, with auth from its own environment, and refuses private targets
unless the config allows them (issue 3)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from aiohttp import web

from tests.e2e.ws_client import RawWorker

SDK = '''
import os, sys, time
from iii import InitOptions, register_worker
from iii_helpers.http import HttpAuthBearer, HttpInvocationConfig

iii = register_worker(sys.argv[1], InitOptions(worker_name="lambda-owner"))
iii.register_function("ext::score", HttpInvocationConfig(
    url=sys.argv[2], method="POST", timeout_ms=5000, auth=HttpAuthBearer(token_key="SCORE_TOKEN")))
print("registered", flush=True)
time.sleep(600)
'''


def test_sdk_registered_http_function_is_called_by_the_engine(start_engine, tmp_path):
    seen: list[tuple[str, str | None, dict]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((request.headers.get("Authorization", ""), request.headers.get("x-iii-Function-Path"), body))
        return web.json_response({"score": body["points"] * 2})

    async def scenario(allow: bool) -> None:
        app = web.Application()
        app.router.add_post("/score", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        engine = start_engine(textwrap.dedent(f"""
            port: 0
            http_functions: {{allow_private: {str(allow).lower()}}}
            modules: []
        """), env={"SCORE_TOKEN": "t0ken"})
        script = tmp_path / "owner.py"
        script.write_text(SDK)
        owner = await asyncio.to_thread(
            subprocess.Popen, [sys.executable, str(script), engine.worker_url, f"http://localhost:{port}/score"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert owner.stdout is not None
            assert (await asyncio.to_thread(owner.stdout.readline)).strip() == "registered"
            await asyncio.to_thread(engine.wait_message, "function registered: ext::score")
            raw = await RawWorker.connect(engine.worker_url)
            try:
                frame = await raw.call("ext::score", {"points": 21})
            finally:
                await raw.close()
        finally:
            owner.kill()
            await asyncio.to_thread(owner.wait, 10)
            await runner.cleanup()
        if allow:
            assert frame.get("result") == {"score": 42}, frame
            assert seen == [("Bearer t0ken", "ext::score", {"points": 21})]
        else:
            assert frame["error"]["code"] == "http_target_forbidden", frame
            assert "localhost" in frame["error"]["message"]
            assert seen == []  # refused before any request

    asyncio.run(scenario(allow=True))
    seen.clear()
    asyncio.run(scenario(allow=False))


def test_bad_invocation_config_is_refused_with_a_clear_log_line(start_engine):
    engine = start_engine("port: 0\nmodules: []\n")

    async def scenario() -> None:
        raw = await RawWorker.connect(engine.worker_url)
        try:
            await raw.send({"type": "registerfunction", "id": "ext::bad",
                            "invocation": {"url": "ftp://example.com/x", "method": "POST"}})
            frame = await raw.call("ext::bad", {})
            assert frame["error"]["code"] == "function_not_found"
        finally:
            await raw.close()

    asyncio.run(scenario())
    line = engine.wait_message("function 'ext::bad' was not registered")
    assert "invocation.url" in line["message"]
