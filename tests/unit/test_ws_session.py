"""The worker port's protocol of one connection, without a socket: frames in, frames out."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

import rpc.ws_session as ws_session
from rpc.ws_session import WsSession
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef, Invocation, Worker
from supervisor.logview import make_log_view


def test_calls_past_the_per_connection_limit_are_refused_and_the_rest_still_answered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_session, "MAX_CALLS_IN_FLIGHT", 3)

    async def main() -> None:
        core = Core(make_log_view("json", "error", io.StringIO()))
        answers: dict[str, asyncio.Future[Any]] = {}

        def slow(invocation: Invocation) -> asyncio.Future[Any]:  # answers only when the test says so
            answers[invocation.data] = asyncio.get_running_loop().create_future()
            return answers[invocation.data]

        core.registry.register_function(FunctionDef("slow::fn", core.engine_worker, slow, enforces_deadline=True,
                                                    invoke_returns_future=True))
        sent: list[dict[str, Any]] = []
        worker = Worker(id="w1", name="ws:test", kind="websocket")
        session = WsSession(core, worker, lambda text: sent.append(json.loads(text)))
        serving = asyncio.ensure_future(session.serve())

        def results() -> dict[str, Any]:
            return {f["invocation_id"]: f for f in sent if f.get("type") == "invocationresult"}

        async def until(condition: Any) -> None:  # loop turns only, no wall-clock wait
            for _ in range(100):
                if condition():
                    return
                await asyncio.sleep(0)
            raise AssertionError("the session did not get there")

        for i in range(5):
            session.frame_received(json.dumps({"type": "invokefunction", "invocation_id": f"c{i}",
                                               "function_id": "slow::fn", "data": f"d{i}"}))
        await until(lambda: len(results()) == 2 and len(answers) == 3)
        refused = results()
        assert sorted(refused) == ["c3", "c4"] and sorted(answers) == ["d0", "d1", "d2"]
        assert refused["c3"]["error"]["code"] == "too_many_calls"
        assert "the limit per connection is 3" in refused["c3"]["error"]["message"]
        for key in ("d0", "d1", "d2"):
            answers[key].set_result(key.upper())
        await until(lambda: len(results()) == 5)
        assert {k: f.get("result") for k, f in results().items()} == {
            "c0": "D0", "c1": "D1", "c2": "D2", "c3": None, "c4": None}
        session.frame_received(json.dumps({"type": "invokefunction", "invocation_id": "c5",
                                           "function_id": "slow::fn", "data": "d5"}))
        await until(lambda: "d5" in answers)  # room again once answers went out
        session.close("test over")
        await serving

    asyncio.run(main())
