"""The Python SDK's helpers (state, streams, publish, enqueue) put the built-ins on the wire,
driven over real pipes by a fake engine, like the Node SDK's own tests do for ``iii-stdio``."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from .sdk_fake_engine import FakeEngine
except ImportError:  # tests/unit is not a package: pytest put this folder on sys.path
    from sdk_fake_engine import FakeEngine  # type: ignore[no-redef]

WORKER = """
import asyncio
from iii_stdio import State, Streams, Worker, ops

worker = Worker()
state = State(worker)
streams = Streams(worker)
astate = State(worker, aio=True)
astreams = Streams(worker, aio=True)

@worker.function("sync::all")
def sync_all(data):
    return [
        state.get("s", "k"),
        state.set("s", "k", {"v": 1}),
        state.delete("s", "k"),
        state.update("s", "k", [ops.increment("n"), ops.set("ok", True)]),
        state.list("s"),
        state.list_groups(),
        streams.get("st", "g", "i"),
        streams.set("st", "g", "i", 5),
        streams.delete("st", "g", "i"),
        streams.list("st", "g"),
        streams.list_groups("st"),
        streams.send("st", "g", "typing", {"who": "a"}),
        streams.send("st", "g", "typing", None, id="i"),
        streams.update("st", "g", "i", [ops.merge({"a": 1}), ops.append(3, "xs"), ops.remove("old"),
                                        ops.decrement("n", 2)]),
        worker.publish("orders", {"id": 1}),
        worker.enqueue("emails", "email::send", {"to": "a"}),
    ]

@worker.function("async::some")
async def async_some(data):
    got = await astate.get("s", "k")
    await astreams.set("st", "g", "i", got)
    return got

worker.run()
"""

SYNC_CALLS = [
    ("state::get", {"scope": "s", "key": "k"}),
    ("state::set", {"scope": "s", "key": "k", "value": {"v": 1}}),
    ("state::delete", {"scope": "s", "key": "k"}),
    ("state::update", {"scope": "s", "key": "k", "ops": [{"type": "increment", "path": "n", "by": 1},
                                                          {"type": "set", "path": "ok", "value": True}]}),
    ("state::list", {"scope": "s"}),
    ("state::list_groups", {}),
    ("stream::get", {"stream_name": "st", "group_id": "g", "item_id": "i"}),
    ("stream::set", {"stream_name": "st", "group_id": "g", "item_id": "i", "data": 5}),
    ("stream::delete", {"stream_name": "st", "group_id": "g", "item_id": "i"}),
    ("stream::list", {"stream_name": "st", "group_id": "g"}),
    ("stream::list_groups", {"stream_name": "st"}),
    ("stream::send", {"stream_name": "st", "group_id": "g", "type": "typing", "data": {"who": "a"}}),
    ("stream::send", {"stream_name": "st", "group_id": "g", "type": "typing", "data": None, "id": "i"}),
    ("stream::update", {"stream_name": "st", "group_id": "g", "item_id": "i", "ops": [
        {"type": "merge", "value": {"a": 1}}, {"type": "append", "path": "xs", "value": 3},
        {"type": "remove", "path": "old"}, {"type": "decrement", "path": "n", "by": 2}]}),
    ("publish", {"topic": "orders", "data": {"id": 1}}),
]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeEngine]:
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    fake = FakeEngine(script)
    yield fake
    fake.kill()


def test_helpers_call_the_builtins_with_their_input_shapes(engine: FakeEngine) -> None:
    engine.handshake()
    engine.invoke("h1", "sync::all", None, traceparent="00-t-s-01")
    for function_id, payload in SYNC_CALLS:
        call = engine.expect("trigger")
        assert call["params"] == {"function_id": function_id, "payload": payload, "traceparent": "00-t-s-01"}
        engine.reply(call, None if function_id == "publish" else {"from": function_id})
    enqueue = engine.expect("trigger")
    assert enqueue["params"] == {"function_id": "email::send", "payload": {"to": "a"},
                                 "action": {"type": "enqueue", "queue": "emails"}}
    engine.reply(enqueue, {"messageReceiptId": "r-1"})
    results = engine.response("h1")["result"]
    expected = [{"from": fid} for fid, _ in SYNC_CALLS if fid != "publish"] + [None, "r-1"]
    assert results == expected  # built-in results come back as they are


def test_async_helpers_return_coroutines_of_the_same_calls(engine: FakeEngine) -> None:
    engine.handshake()
    engine.invoke("a1", "async::some", None)
    call = engine.expect("trigger")
    assert call["params"] == {"function_id": "state::get", "payload": {"scope": "s", "key": "k"}}
    engine.reply(call, {"v": 7})
    call = engine.expect("trigger")
    assert call["params"] == {"function_id": "stream::set",
                              "payload": {"stream_name": "st", "group_id": "g", "item_id": "i", "data": {"v": 7}}}
    engine.reply(call, {"old_value": None, "new_value": {"v": 7}})
    assert engine.response("a1")["result"] == {"v": 7}


def test_helper_errors_raise_with_the_builtins_code(engine: FakeEngine) -> None:
    engine.handshake()
    engine.invoke("e1", "async::some", None)
    engine.reply_error(engine.expect("trigger"), "function_not_found", "state::get not found")
    error = engine.response("e1")["error"]
    assert error["data"]["code"] == "function_not_found" and error["message"] == "state::get not found"
