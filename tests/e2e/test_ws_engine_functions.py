"""The engine::* built-ins, event triggers, reattach, namespaces and the worker token (issue 3),
against a real engine, real stdio workers and the real iii-sdk 0.25.0."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap

import aiohttp
import httpx
import pytest

from tests.e2e.conftest import api_config
from tests.e2e.ws_client import RawWorker

STDIO = '''
from iii_stdio import Worker
worker = Worker()

@worker.http("GET", "/greet/:name", function_id="stdio::greet")
def greet(req):
    return {"hello": req["path_params"]["name"]}

@worker.function("stdio::plain")
def plain(data):
    return data

worker.run()
'''

SDK = '''
import os, time
from iii import InitOptions, register_worker

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="sdk", namespace=os.environ.get("NS") or None))
iii.register_function("sdk::echo", lambda data: data, description="Echo it back", metadata={"team": "core"})
iii.register_function("sdk::hidden", lambda data: data, metadata={"internal": True})
time.sleep(600)
'''


def _engine(start_engine, *, sdk_env: str = "", extra: str = ""):
    return start_engine(extra + api_config(
        '- class: modules::shell::ExecModule\n  config: {name: stdio, exec: ["python stdio_worker.py"]}',
        f'- class: modules::shell::ExecModule\n  config: {{name: sdk, exec: ["python sdk_worker.py"]{sdk_env}}}',
    ), {"stdio_worker.py": STDIO, "sdk_worker.py": SDK})


def test_listing_functions_workers_and_triggers(start_engine):
    engine = _engine(start_engine)
    engine.wait_message("worker ready", source="stdio")
    engine.wait_message("worker connected (python 0.25.0)", source="sdk")
    engine.wait_message("function registered: sdk::hidden")
    stdio_pid = next(int(p.pid) for p in engine.children() if "stdio_worker.py" in " ".join(p.cmdline()))

    async def scenario() -> None:
        raw = await RawWorker.connect(engine.worker_url)
        try:
            workers = (await raw.result("engine::workers::list"))["workers"]
            by_name = {w["name"]: w for w in workers}
            assert by_name["stdio"]["pid"] == stdio_pid and by_name["stdio"]["transport"] == "stdio"
            assert by_name["stdio"]["function_count"] == 2
            assert by_name["sdk"]["runtime"] == "python" and by_name["sdk"]["version"] == "0.25.0"
            assert by_name["sdk"]["ip_address"] == "127.0.0.1"
            assert (await raw.result("engine::workers::list", {"runtime": "python"}))["workers"] == [by_name["sdk"]]

            listed = (await raw.result("engine::functions::list"))["functions"]
            assert [f["function_id"] for f in listed] == ["sdk::echo", "stdio::greet", "stdio::plain"]
            assert listed[0] == {"function_id": "sdk::echo", "namespace": "default", "worker_name": "sdk",
                                 "description": "Echo it back", "metadata": {"team": "core"}}
            everything = (await raw.result("engine::functions::list", {"include_internal": True}))["functions"]
            ids = [f["function_id"] for f in everything]
            assert "sdk::hidden" in ids and "engine::functions::list" in ids
            only = (await raw.result("engine::functions::list", {"worker": "stdio", "search": "GREET"}))
            assert [f["function_id"] for f in only["functions"]] == ["stdio::greet"]

            info = await raw.result("engine::functions::info", {"function_id": "stdio::greet"})
            assert info["worker_name"] == "stdio"
            assert [(t["trigger_type"], t["config"]["api_path"]) for t in info["registered_triggers"]] == [
                ("http", "/greet/:name")]
            batch = await raw.result("engine::functions::info", {"function_ids": ["sdk::echo", "nope"]})
            assert batch["functions"][0]["function_id"] == "sdk::echo"
            assert batch["functions"][1] == {"function_id": "nope", "error": "not_found"}

            winfo = await raw.result("engine::workers::info", {"name": "stdio"})
            assert winfo["worker"]["pid"] == stdio_pid
            assert [f["function_id"] for f in winfo["functions"]] == ["stdio::greet", "stdio::plain"]
            assert [t["config_summary"] for t in winfo["registered_triggers"]] == ["GET /greet/:name"]

            types = (await raw.result("engine::triggers::list"))["triggers"]
            assert "http" in [t["id"] for t in types]
            assert not [t for t in types if t["id"].startswith("engine::")]
            internal = (await raw.result("engine::triggers::list", {"include_internal": True}))["triggers"]
            assert {"engine::workers-available", "engine::functions-available"} <= {t["id"] for t in internal}
            http_type = await raw.result("engine::triggers::info", {"id": "http"})
            assert http_type["instance_count"] == 1

            regs = (await raw.result("engine::registered-triggers::list", {"trigger_type": "http"}))
            [route] = regs["registered_triggers"]
            assert route["function_id"] == "stdio::greet" and route["worker_name"] == "stdio"
            detail = await raw.result("engine::registered-triggers::info", {"id": route["id"]})
            assert detail["trigger"]["id"] == "http" and detail["function"]["function_id"] == "stdio::greet"

            bad = await raw.call("engine::workers::info", {"name": 42})
            assert bad["error"]["code"] == "deserialization_error" and "`name`" in bad["error"]["message"]
            missing = await raw.call("engine::functions::info", {"function_id": "nope"})
            assert missing["error"]["code"] == "function_not_found"
        finally:
            await raw.close()

    asyncio.run(scenario())


def test_engine_owned_trigger_outlives_the_connection_that_made_it(start_engine):
    engine = _engine(start_engine)
    engine.wait_message("worker ready", source="stdio")
    http = engine.http_url

    async def register() -> str:
        raw = await RawWorker.connect(engine.worker_url)
        try:
            made = await raw.result("engine::register_trigger", {
                "trigger_type": "http", "function_id": "stdio::plain",
                "config": {"api_path": "/plain", "http_method": "POST"}})
            refused = await raw.call("engine::register_trigger", {"trigger_type": "http", "function_id": "x",
                                                                  "config": {}})
            assert refused["error"]["code"] == "trigger_registration_failed"
            assert "api_path" in refused["error"]["message"]
            return str(made["id"])
        finally:
            await raw.close()

    trigger_id = asyncio.run(register())
    engine.wait_message("worker disconnected")
    r = httpx.post(http + "/plain", json={"kept": True}, timeout=10)
    assert r.status_code == 200 and r.json()["body"] == {"kept": True}

    async def unregister() -> None:
        raw = await RawWorker.connect(engine.worker_url)
        try:
            assert await raw.result("engine::unregister_trigger", {"id": trigger_id}) == {"removed": True}
            assert await raw.result("engine::unregister_trigger", {"id": trigger_id}) == {"removed": False}
        finally:
            await raw.close()

    asyncio.run(unregister())
    assert httpx.post(http + "/plain", json={}, timeout=10).status_code == 404


def test_workers_and_functions_available_fire_on_change(start_engine):
    engine = start_engine("port: 0\nmodules: []\n")
    url = engine.worker_url

    async def scenario() -> None:
        watcher = await RawWorker.connect(url)
        other: RawWorker | None = None
        try:
            await watcher.send({"type": "registerfunction", "id": "watch::events"})
            for type_ in ("engine::workers-available", "engine::functions-available"):
                await watcher.send({"type": "registertrigger", "id": f"t-{type_}", "trigger_type": type_,
                                    "function_id": "watch::events", "config": {}, "metadata": {"why": "test"}})
            # an invocation from the watcher itself proves the registrations above were handled
            await watcher.result("engine::functions::list")

            other = await RawWorker.connect(url)
            connected = await watcher.expect("invokefunction", where=lambda f: f["data"].get("event")
                                             == "worker_connected" and f["data"]["worker_id"] == other.worker_id)
            assert connected["metadata"] == {"why": "test"}
            await watcher.answer(connected)
            await other.send({"type": "registerfunction", "id": "other::a"})
            await other.send({"type": "registerfunction", "id": "other::b"})
            changed = await watcher.expect("invokefunction",
                                           where=lambda f: f["data"].get("event") == "functions_changed"
                                           and "other::b" in [x["function_id"] for x in f["data"]["functions"]])
            ids = [x["function_id"] for x in changed["data"]["functions"]]
            assert ids == ["other::a", "other::b", "watch::events"]  # one coalesced event with both
            await watcher.answer(changed)
            await other.send({"type": "invokefunction", "function_id": "engine::workers::register",
                              "data": {"name": "renamed", "runtime": "raw"}, "action": {"type": "void"}})
            updated = await watcher.expect("invokefunction", where=lambda f: f["data"].get("event")
                                           == "worker_metadata_updated")
            assert updated["data"]["worker_name"] == "renamed"
            await watcher.answer(updated)
            await other.close()
            other = None
            gone = await watcher.expect("invokefunction", where=lambda f: f["data"].get("event")
                                        == "worker_disconnected")
            await watcher.answer(gone)
        finally:
            await watcher.close()
            if other is not None:
                await other.close()

    asyncio.run(scenario())


def test_reattach_retires_the_previous_connection_before_the_replay(start_engine):
    engine = start_engine("port: 0\nmodules: []\n")
    url = engine.worker_url

    async def scenario() -> None:
        old = await RawWorker.connect(url)
        new = await RawWorker.connect(url)
        try:
            await old.send({"type": "registerfunction", "id": "r::fn"})
            await old.result("engine::functions::list")  # registration handled
            # a wrong token is ignored: the old connection keeps its function
            await new.send({"type": "reattach", "previous_worker_id": old.worker_id, "reattach_token": "wrong"})
            listed = await new.result("engine::functions::list")
            assert [f["function_id"] for f in listed["functions"]] == ["r::fn"]
            assert not old.closed.is_set()
            # the right token: the old connection goes before the replayed registration is handled
            await new.send({"type": "reattach", "previous_worker_id": old.worker_id,
                            "reattach_token": old.reattach_token})
            await new.send({"type": "registerfunction", "id": "r::fn"})
            info = await new.result("engine::functions::info", {"function_id": "r::fn"})
            assert info["worker_name"] == "ws:127.0.0.1"
            workers = (await new.result("engine::workers::list"))["workers"]
            assert [w["id"] for w in workers] == [new.worker_id]
            async with asyncio.timeout(5):
                await old.closed.wait()
            # the function answers from the new connection
            call = asyncio.ensure_future(new.call("r::fn", {"x": 1}))
            invoke = await new.expect("invokefunction")
            await new.answer(invoke, {"from": "new"})
            assert (await call)["result"] == {"from": "new"}
        finally:
            await old.close()
            await new.close()

    asyncio.run(scenario())


def test_namespaced_worker_and_fallback_to_default_for_built_ins(start_engine):
    engine = _engine(start_engine, sdk_env=', env: {NS: orders}')
    engine.wait_message("worker connected (python 0.25.0)", source="sdk")

    async def scenario() -> None:
        raw = await RawWorker.connect(engine.worker_url)
        try:
            assert await raw.result("sdk::echo", {"a": 1}) == {"a": 1}  # no namespace: found anywhere
            assert await raw.result("sdk::echo", {"a": 2}, namespace="orders") == {"a": 2}
            strict = await raw.call("sdk::echo", {}, namespace="default")
            assert strict["error"]["code"] == "function_not_found"
            assert "orders" in strict["error"]["message"]
            listed = await raw.result("engine::functions::list", {}, namespace="orders")  # built-in: fallback
            echo = next(f for f in listed["functions"] if f["function_id"] == "sdk::echo")
            assert echo["namespace"] == "orders"
            blank = await raw.call("sdk::echo", {}, namespace=" ")
            assert blank["error"]["code"] == "INVALID_NAMESPACE"
        finally:
            await raw.close()

    asyncio.run(scenario())


def test_worker_token_is_required_at_the_upgrade(start_engine):
    engine = _engine(start_engine, extra="worker_token: ${TOKEN}\n")
    # the supervised SDK worker gets III_TOKEN from the engine and connects with it
    engine.wait_message("worker connected (python 0.25.0)", source="sdk")

    async def scenario() -> None:
        for headers in (None, {"Authorization": "Bearer nope"}, {"Authorization": "Basic s3cret"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await RawWorker.connect(engine.worker_url, headers)
            assert refused.value.status == 401
        raw = await RawWorker.connect(engine.worker_url, {"Authorization": "Bearer s3cret"})
        try:
            assert await raw.result("sdk::echo", {"ok": 1}) == {"ok": 1}
        finally:
            await raw.close()

    asyncio.run(scenario())
    engine.wait_message("refused a worker connection")


@pytest.fixture(autouse=True)
def _token_env(monkeypatch):
    monkeypatch.setenv("TOKEN", "s3cret")


def test_metadata_reaches_the_callee(start_engine):
    engine = start_engine(textwrap.dedent("port: 0\nmodules: []\n"))

    async def scenario() -> None:
        callee = await RawWorker.connect(engine.worker_url)
        caller = await RawWorker.connect(engine.worker_url)
        try:
            await callee.send({"type": "registerfunction", "id": "m::fn"})
            await callee.result("engine::functions::list")
            call = asyncio.ensure_future(caller.call("m::fn", {"x": 1}, metadata={"trace": "abc"}))
            invoke = await callee.expect("invokefunction")
            assert invoke["metadata"] == {"trace": "abc"} and invoke["data"] == {"x": 1}
            await callee.answer(invoke, 7)
            assert (await call)["result"] == 7
        finally:
            await callee.close()
            await caller.close()

    asyncio.run(scenario())


def test_large_messages_pass_and_oversized_ones_close_only_their_connection(start_engine):
    engine = start_engine("port: 0\nmodules: []\n")
    url = engine.worker_url
    big = "x" * (48 * 1024 * 1024)  # under the 64 MiB limit of the protocol

    async def scenario() -> None:
        callee = await RawWorker.connect(url)
        caller = await RawWorker.connect(url)
        try:
            await callee.send({"type": "registerfunction", "id": "big::len"})
            await callee.result("engine::functions::list")
            call = asyncio.ensure_future(caller.call("big::len", {"blob": big}, timeout=60))
            invoke = await callee.expect("invokefunction", timeout=60)
            await callee.answer(invoke, len(invoke["data"]["blob"]))
            assert (await call)["result"] == len(big)

            with contextlib.suppress(ConnectionError):  # the engine hangs up as soon as it sees the length
                await caller.ws.send_str('{"type":"ping","pad":"' + "y" * (65 * 1024 * 1024) + '"}')
            async with asyncio.timeout(30):
                await caller.closed.wait()
            third = await RawWorker.connect(url)
            try:
                call = asyncio.ensure_future(third.call("big::len", {"blob": "abc"}))
                invoke = await callee.expect("invokefunction")
                await callee.answer(invoke, 3)
                assert (await call)["result"] == 3
            finally:
                await third.close()
        finally:
            await callee.close()
            await caller.close()

    asyncio.run(scenario())
    engine.wait_message("exceeded the 64 MiB limit")


@pytest.mark.parametrize("setting, negotiated", [("", False), ("worker_compression: true\n", True)])
def test_permessage_deflate_is_declined_unless_configured(start_engine, setting, negotiated):
    """The iii-sdk clients offer deflate; compressing every small frame costs more than it saves locally."""
    engine = start_engine(textwrap.dedent("port: 0\nmodules: []\n") + setting)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(engine.worker_url, compress=15) as ws:
                assert bool(ws.compress) is negotiated
                registered = await asyncio.wait_for(ws.receive_json(), 10)
                assert registered["type"] == "workerregistered"  # frames flow either way

    asyncio.run(scenario())


def test_a_worker_that_reads_slowly_gets_every_invocation_in_order(start_engine):
    """Past the socket's buffer the worker port stops writing directly and queues (draining): a slow
    reader neither loses nor reorders frames, and other connections keep being served."""
    engine = start_engine(textwrap.dedent("port: 0\nmodules: []\n"))
    count, pad = 300, "x" * 50_000  # ~15 MB: far past the kernel's and aiohttp's buffers

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(engine.worker_url, max_msg_size=0) as slow:
                assert (await slow.receive_json(timeout=10))["type"] == "workerregistered"
                await slow.send_json({"type": "registerfunction", "id": "slow::echo"})
                caller = await RawWorker.connect(engine.worker_url)
                try:
                    first = asyncio.ensure_future(caller.call("slow::echo", {"i": -1}, timeout=10))
                    while (frame := await slow.receive_json(timeout=10))["type"] != "invokefunction":
                        pass  # registered: the first call got through
                    await slow.send_json({"type": "invocationresult", "invocation_id": frame["invocation_id"],
                                          "function_id": "slow::echo", "result": -1})
                    assert (await first)["result"] == -1
                    calls = [asyncio.ensure_future(caller.call("slow::echo", {"i": i, "pad": pad}, timeout=60))
                             for i in range(count)]
                    other = await RawWorker.connect(engine.worker_url)  # served while `slow` is not read
                    try:
                        assert await other.result("engine::workers::list", {}) is not None
                    finally:
                        await other.close()
                    seen = []
                    while len(seen) < count:  # now read everything, answering as we go
                        frame = await slow.receive_json(timeout=30)
                        if frame.get("type") != "invokefunction":
                            continue
                        seen.append(frame["data"]["i"])
                        await slow.send_json({"type": "invocationresult", "invocation_id": frame["invocation_id"],
                                              "function_id": "slow::echo", "result": frame["data"]["i"]})
                    assert seen == list(range(count))
                    answers = await asyncio.gather(*calls)
                    assert [a["result"] for a in answers] == list(range(count))
                finally:
                    await caller.close()

    asyncio.run(scenario())
