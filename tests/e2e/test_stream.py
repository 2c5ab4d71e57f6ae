"""Streams end to end: real WebSocket clients on the stream port get what stdio and iii-sdk workers
change; auth_function and stream:join refuse; a client that stops reading is dropped while the
others keep receiving; a worker takes over one stream's storage; Redis shares a stream between
two engine instances."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import textwrap
import uuid
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import EngineProcess
from tests.e2e.ws_client import RawWorker
from tests.services import delete_redis_prefix, require_redis

WAIT = 10.0  # seconds any single expected message may take


def stream_config(*extra_modules: str, stream: str = "") -> str:
    blocks = "".join(textwrap.indent(textwrap.dedent(m).strip() + "\n", "  ") for m in extra_modules)
    extra = textwrap.indent(textwrap.dedent(stream).strip() + "\n", "      ") if stream else ""
    return ("port: 0\nmodules:\n  - class: modules::stream::StreamModule\n    config:\n"
            "      host: 127.0.0.1\n      port: 0\n" + extra + blocks)


def stream_url(engine: EngineProcess) -> str:
    event = engine.wait_message("stream server listening on ")
    return str(event["message"]).split("listening on ", 1)[1].strip()


def join(sub: str, stream: str, group: str, item: str | None = None, kind: str = "join") -> str:
    data: dict[str, Any] = {"subscriptionId": sub, "streamName": stream, "groupId": group}
    if item is not None:
        data["id"] = item
    return json.dumps({"type": kind, "data": data})


async def next_message(ws: aiohttp.ClientWebSocketResponse, timeout: float = WAIT) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data = json.loads(msg.data)
    assert data["type"] == "stream" and isinstance(data["timestamp"], int), data
    return data


def event_of(msg: dict[str, Any]) -> tuple[Any, str, Any]:
    event = msg["event"]
    return msg["id"], event["type"], event.get("data", event.get("event"))


# -- workers push, clients receive -------------------------------------------------------------

STDIO = '''
from iii_stdio import Worker
worker = Worker()

@worker.function("chat::post")
def post(data):
    at = {"stream_name": "chat", "group_id": data["room"], "item_id": data["id"]}
    worker.trigger("stream::set", {**at, "data": {"id": data["id"], "text": data["text"]}})
    worker.trigger("stream::update", {**at, "ops": [{"type": "set", "path": "edited", "value": True}]})
    worker.trigger("stream::send", {"stream_name": "chat", "group_id": data["room"], "type": "typing",
                                    "data": {"who": "ann"}})
    return worker.trigger("stream::delete", at)

@worker.function("chat::on_change")
def on_change(msg):
    worker.logger.info("stream trigger", {"msg": msg})

worker.register_trigger("stream", "chat::on_change", {"stream_name": "chat", "group_id": "room1"})
worker.run()
'''

SDK = '''
import os, time
from iii import InitOptions, register_worker

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="sdk"))

def pin(data):
    return iii.trigger({"function_id": "stream::set", "payload": {
        "stream_name": "chat", "group_id": data["room"], "item_id": "pinned", "data": {"id": "pinned"}}})

iii.register_function("chat::pin", pin)
time.sleep(600)
'''


def test_clients_receive_what_stdio_and_sdk_workers_change(start_engine):
    engine = start_engine(stream_config(
        '- class: modules::shell::ExecModule\n  config: {name: stdio, exec: ["python stdio_worker.py"]}',
        '- class: modules::shell::ExecModule\n  config: {name: sdk, exec: ["python sdk_worker.py"]}',
    ), {"stdio_worker.py": STDIO, "sdk_worker.py": SDK})
    engine.wait_message("worker ready", source="stdio")
    engine.wait_message("function registered: chat::pin")
    url = stream_url(engine)

    async def scenario() -> None:
        raw = await RawWorker.connect(engine.worker_url)
        async with aiohttp.ClientSession() as http:
            group = await http.ws_connect(url)
            item = await http.ws_connect(url)
            try:
                await raw.result("stream::set", {"stream_name": "chat", "group_id": "room1", "item_id": "old",
                                                 "data": {"id": "old"}})
                await group.send_str(join("g1", "chat", "room1"))
                sync = await next_message(group)
                assert (sync["streamName"], sync["groupId"], sync["id"]) == ("chat", "room1", None)
                assert sync["event"] == {"type": "sync", "data": [{"id": "old"}]}
                await item.send_str(join("i1", "chat", "room1", "m1"))
                assert (await next_message(item))["event"] == {"type": "sync", "data": None}

                assert await raw.result("chat::post", {"room": "room1", "id": "m1", "text": "hi"}) == {
                    "old_value": {"id": "m1", "text": "hi", "edited": True}}
                got = [event_of(await next_message(group)) for _ in range(4)]
                assert got == [("m1", "create", {"id": "m1", "text": "hi"}),
                               ("m1", "update", {"id": "m1", "text": "hi", "edited": True}),
                               (None, "event", {"type": "typing", "data": {"who": "ann"}}),
                               ("m1", "delete", {"id": "m1", "text": "hi", "edited": True})]
                # the item subscription gets the item's changes, not the group-wide custom event
                assert [event_of(await next_message(item))[1] for _ in range(3)] == ["create", "update", "delete"]

                await raw.result("chat::pin", {"room": "room1"})  # the iii-sdk worker writes
                assert event_of(await next_message(group)) == ("pinned", "create", {"id": "pinned"})
                await raw.result("chat::post", {"room": "room2", "id": "x", "text": "elsewhere"})
                await group.send_str(join("g1", "chat", "room1", kind="leave"))
                # Frames of one client are handled in order and messages to it keep their order: the probe's
                # sync means the leave is done, the second probe's sync that nothing came in between.
                await group.send_str(join("probe", "chat", "probe"))
                assert (await next_message(group))["groupId"] == "probe"
                await raw.result("stream::set", {"stream_name": "chat", "group_id": "room1", "item_id": "late",
                                                 "data": {}})
                await group.send_str(join("probe2", "chat", "probe2"))
                assert (await next_message(group))["groupId"] == "probe2"  # room1 (left) and room2: nothing
                assert await raw.result("stream::list_groups", {"stream_name": "chat"}) == ["room1"]
            finally:
                await group.close()
                await item.close()
                await raw.close()

    asyncio.run(scenario())
    triggered = engine.wait_for(lambda e: e.get("message") == "stream trigger"
                                and e["msg"]["event"]["type"] == "delete", what="stream trigger for the delete")
    assert triggered["msg"]["streamName"] == "chat" and triggered["msg"]["groupId"] == "room1"
    assert not [e for e in engine.events if e.get("message") == "stream trigger" and e["msg"]["groupId"] != "room1"]


def test_items_survive_an_engine_restart_in_the_default_store(start_engine, tmp_path):
    config = stream_config()
    first = start_engine(config)

    async def write() -> None:
        raw = await RawWorker.connect(first.worker_url)
        try:
            await raw.result("stream::set", {"stream_name": "s", "group_id": "g", "item_id": "a", "data": {"n": 1}})
        finally:
            await raw.close()

    asyncio.run(write())
    first.close()
    second = start_engine(config)

    async def read() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(stream_url(second)) as ws:
            await ws.send_str(join("s1", "s", "g"))
            assert (await next_message(ws))["event"] == {"type": "sync", "data": [{"n": 1}]}

    asyncio.run(read())
    assert (tmp_path / ".iii" / "data" / "stream.sqlite3").exists()


# -- auth_function, stream:join, stream:leave ---------------------------------------------------

GATE = '''
from iii_stdio import Worker
worker = Worker()

@worker.function("auth::check")
def check(req):
    token = (req["query_params"].get("token") or [""])[0]
    offered = req["headers"].get("sec-websocket-protocol", "")  # browsers: new WebSocket(url, ["Authorization", t])
    if not token and offered.startswith("Authorization,"):
        token = offered.split(",", 1)[1].strip()
    if token == "bad":
        raise RuntimeError("token expired")
    if token == "none":
        return {"unauthorized": True}
    return {"context": {"user": token, "auth": req["headers"].get("authorization"), "path": req["path"]}}

@worker.function("hooks::join")
def on_join(event):
    worker.logger.info("joined", {"event": event})
    if event["group_id"] == "secret" and event["context"]["user"] != "admin":
        return {"unauthorized": True}
    return {}

@worker.function("hooks::leave")
def on_leave(event):
    worker.logger.info("left", {"event": event})

worker.register_trigger("stream:join", "hooks::join", {})
worker.register_trigger("stream:leave", "hooks::leave", {})
worker.run()
'''


def test_auth_function_and_join_hook_refuse_and_leave_fires(start_engine):
    engine = start_engine(stream_config(
        '- class: modules::shell::ExecModule\n  config: {name: gate, exec: ["python gate.py"]}',
        stream="auth_function: auth::check"), {"gate.py": GATE})
    engine.wait_message("worker ready", source="gate")
    url = stream_url(engine)
    http_url = url.replace("ws://", "http://")

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
            async with http.get(http_url + "/?token=bad", headers=upgrade) as refused:
                assert refused.status == 401
                assert await refused.json() == {"error": {"code": "AUTH_ERROR",
                                                          "message": "RuntimeError: token expired"}}
            async with http.get(http_url + "/?token=none", headers=upgrade) as refused:
                assert refused.status == 401 and (await refused.json())["error"]["code"] == "UNAUTHORIZED"
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(url + "/?token=bad")
            assert info.value.status == 401
            async with http.get(http_url + "/") as plain:
                assert plain.status == 426

            ann = await http.ws_connect(url + "/live?token=ann", headers={"Authorization": "Bearer abc"})
            admin = await http.ws_connect(url, protocols=("Authorization", "admin"))
            assert admin.protocol == "Authorization"
            try:
                await ann.send_str(join("s1", "chat", "secret"))
                refused_join = await next_message(ann)
                assert refused_join["event"] == {"type": "unauthorized"} and refused_join["groupId"] == "secret"
                await ann.send_str(join("s2", "chat", "public"))
                assert (await next_message(ann))["event"]["type"] == "sync"
                await admin.send_str(join("a1", "chat", "secret"))
                assert (await next_message(admin))["event"] == {"type": "sync", "data": []}
                raw = await RawWorker.connect(engine.worker_url)
                try:
                    await raw.result("stream::set", {"stream_name": "chat", "group_id": "secret", "item_id": "x",
                                                     "data": {"id": "x"}})
                finally:
                    await raw.close()
                assert event_of(await next_message(admin)) == ("x", "create", {"id": "x"})
                await ann.send_str(join("probe", "chat", "probe"))  # refused: ann never got the secret event
                assert (await next_message(ann))["groupId"] == "probe"
            finally:
                await ann.close()
                await admin.close()

    asyncio.run(scenario())
    joined = engine.wait_for(lambda e: e.get("message") == "joined" and e["event"]["subscription_id"] == "s2",
                             what="join hook for s2")
    assert joined["event"] == {"subscription_id": "s2", "stream_name": "chat", "group_id": "public", "id": None,
                               "context": {"user": "ann", "auth": "Bearer abc", "path": "/live"}}
    left = engine.wait_for(lambda e: e.get("message") == "left" and e["event"]["subscription_id"] == "s2",
                           what="leave synthesised when ann's socket closed")
    assert left["event"]["group_id"] == "public"
    engine.wait_for(lambda e: e.get("message") == "left" and e["event"]["subscription_id"] == "a1", what="leave a1")
    assert not [e for e in engine.events if e.get("message") == "left" and e["event"]["subscription_id"] == "s1"]
    engine.wait_message("refused by auth_function: RuntimeError: token expired")


# -- a slow client is dropped, the others keep receiving ----------------------------------------

class StalledClient:
    """A WebSocket client that joins and then never reads (tiny receive buffer, raw socket)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("ws://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = b""

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def read_until_closed(self, timeout: float) -> tuple[int, bytes] | None:
        """Drain everything; the close frame's (code, reason) if one came before the end."""
        self.sock.settimeout(timeout)
        close: tuple[int, bytes] | None = None
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                self.buf += chunk
                close = close or self._scan()
        except ConnectionResetError:
            pass
        return close

    def _scan(self) -> tuple[int, bytes] | None:
        while len(self.buf) >= 2:
            opcode, size, start = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
            if size == 126:
                if len(self.buf) < 4:
                    return None
                size, start = struct.unpack(">H", self.buf[2:4])[0], 4
            elif size == 127:
                if len(self.buf) < 10:
                    return None
                size, start = struct.unpack(">Q", self.buf[2:10])[0], 10
            if len(self.buf) < start + size:
                return None
            payload, self.buf = self.buf[start:start + size], self.buf[start + size:]
            if opcode == 0x8:
                return struct.unpack(">H", payload[:2])[0], payload[2:]
        return None

    def close(self) -> None:
        self.sock.close()


def test_a_client_that_stops_reading_is_dropped_while_others_keep_receiving(start_engine):
    engine = start_engine(stream_config(stream="client_buffer_messages: 64\nclient_buffer_bytes: 1048576"))
    url = stream_url(engine)
    stalled = StalledClient(url)
    stalled.send_text(join("slow", "feed", "all"))
    blob = "x" * 8_000
    batch, most = 16, 4000  # the readers below are never more than one batch (128 kB) behind

    async def scenario() -> int:
        raw = await RawWorker.connect(engine.worker_url)
        async with aiohttp.ClientSession() as http:
            fast = [await http.ws_connect(url, max_msg_size=0) for _ in range(3)]
            for ws in fast:
                await ws.send_str(join("fast", "feed", "all"))
                assert (await next_message(ws))["event"]["type"] == "sync"
            counts = [0] * len(fast)
            progress = asyncio.Condition()

            async def read(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
                while True:
                    msg = await next_message(ws)
                    if msg["event"]["event"]["type"] == "end":
                        return
                    counts[i] += 1
                    async with progress:
                        progress.notify_all()

            readers = [asyncio.ensure_future(read(i, ws)) for i, ws in enumerate(fast)]
            sent = cursor = 0
            try:
                # push until the engine gives up on the stalled client (bounded: at most ~32 MB)
                while sent < most:
                    await asyncio.gather(*(raw.result("stream::send", {"stream_name": "feed", "group_id": "all",
                                                                       "type": "blob", "data": blob})
                                           for _ in range(batch)))
                    sent += batch
                    async with progress:
                        await asyncio.wait_for(progress.wait_for(lambda target=sent: min(counts) >= target), WAIT)
                    if any("dropped: client too slow" in str(e.get("message")) for e in engine.events[cursor:]):
                        break
                    cursor = len(engine.events)
                await raw.result("stream::send", {"stream_name": "feed", "group_id": "all", "type": "end"})
                await asyncio.wait_for(asyncio.gather(*readers), WAIT)
            finally:
                for ws in fast:
                    await ws.close()
                await raw.close()
            assert counts == [sent] * len(fast), (counts, sent)  # nobody else lost a message
            return sent

    sent = asyncio.run(scenario())
    assert sent < most
    dropped = engine.wait_message("dropped: client too slow")
    assert "limit 64 messages / 1048576 bytes" in dropped["message"]
    close = stalled.read_until_closed(timeout=15)
    stalled.close()
    assert close is not None and close[0] == 1013 and close[1].startswith(b"client too slow"), close
    engine.wait_message("disconnected: client too slow")


# -- a worker takes over one stream's storage ---------------------------------------------------

CUSTOM = '''
import os, time, warnings
warnings.simplefilter("ignore", FutureWarning)
from iii import IStream, InitOptions, register_worker
from iii.helpers import create_stream
from iii_helpers.stream import StreamDeleteResult, StreamSetResult

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="custom"))
rows = {}

class Memory(IStream):
    async def get(self, input):
        return rows.get((input.group_id, input.item_id))
    async def set(self, input):
        old = rows.get((input.group_id, input.item_id))
        rows[(input.group_id, input.item_id)] = input.data
        print("custom set", input.item_id, flush=True)
        return StreamSetResult(old_value=old, new_value=input.data)
    async def delete(self, input):
        return StreamDeleteResult(old_value=rows.pop((input.group_id, input.item_id), None))
    async def list(self, input):
        return [v for (g, _), v in rows.items() if g == input.group_id]
    async def list_groups(self, input):
        return sorted({g for g, _ in rows})
    async def update(self, input):
        raise NotImplementedError  # the SDK never registers it: the engine does get -> ops -> set

create_stream(iii, "ext", Memory())
time.sleep(600)
'''


def test_a_worker_takes_over_one_streams_storage(start_engine):
    engine = start_engine(stream_config(
        '- class: modules::shell::ExecModule\n  config: {name: custom, exec: ["python custom.py"]}'),
        {"custom.py": CUSTOM})
    engine.wait_message("function registered: stream::list_groups(ext)")
    url = stream_url(engine)

    async def scenario() -> None:
        raw = await RawWorker.connect(engine.worker_url)
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            try:
                at = {"stream_name": "ext", "group_id": "g", "item_id": "a"}
                assert await raw.result("stream::set", {**at, "data": {"id": "a", "n": 1}}) == {
                    "old_value": None, "new_value": {"id": "a", "n": 1}}
                await ws.send_str(join("s", "ext", "g"))  # the sync comes from the worker's list
                assert (await next_message(ws))["event"] == {"type": "sync", "data": [{"id": "a", "n": 1}]}
                upd = await raw.result("stream::update", {**at, "ops": [{"type": "increment", "path": "n", "by": 1}]})
                assert upd == {"old_value": {"id": "a", "n": 1}, "new_value": {"id": "a", "n": 2}}
                assert event_of(await next_message(ws)) == ("a", "update", {"id": "a", "n": 2})
                assert await raw.result("stream::get", at) == {"id": "a", "n": 2}
                assert await raw.result("stream::list_groups", {"stream_name": "ext"}) == ["g"]
                assert await raw.result("stream::delete", at) == {"old_value": {"id": "a", "n": 2}}
                assert event_of(await next_message(ws)) == ("a", "delete", {"id": "a", "n": 2})
                # the engine's own store never saw the custom stream
                assert await raw.result("stream::list_all", {}) == {"stream": [], "count": 0}
            finally:
                await raw.close()

    asyncio.run(scenario())
    assert len([e for e in engine.events if "custom set a" in str(e.get("message"))]) == 2  # set, then update


# -- Redis: one stream, two engine instances ----------------------------------------------------

def test_redis_adapter_shares_items_and_events_between_engines(start_engine, tmp_path):
    redis_url = require_redis()
    prefix = f"iii-test-{uuid.uuid4().hex[:8]}"
    adapter = (f"adapter:\n  class: modules::stream::adapters::RedisAdapter\n"
               f"  config: {{redis_url: '{redis_url}', prefix: '{prefix}'}}")
    reader = start_engine(stream_config(stream=adapter))
    writer_dir = tmp_path / "writer"
    writer_dir.mkdir()
    cfg = writer_dir / "config.yaml"
    cfg.write_text(stream_config(stream=adapter))
    writer = EngineProcess(writer_dir, cfg)
    try:
        async def scenario() -> None:
            raw = await RawWorker.connect(writer.worker_url)
            async with aiohttp.ClientSession() as http, http.ws_connect(stream_url(reader)) as ws:
                try:
                    await ws.send_str(join("s", "orders", "o1"))
                    assert (await next_message(ws))["event"] == {"type": "sync", "data": []}
                    await raw.result("stream::set", {"stream_name": "orders", "group_id": "o1", "item_id": "i1",
                                                     "data": {"id": "i1"}})
                    assert event_of(await next_message(ws)) == ("i1", "create", {"id": "i1"})
                    await raw.result("stream::send", {"stream_name": "orders", "group_id": "o1", "type": "ping"})
                    assert event_of(await next_message(ws))[1] == "event"
                finally:
                    await raw.close()
            other = await RawWorker.connect(reader.worker_url)
            try:
                assert await other.result("stream::list", {"stream_name": "orders", "group_id": "o1"}) == [
                    {"id": "i1"}]
            finally:
                await other.close()

        asyncio.run(scenario())
    finally:
        writer.close()
        delete_redis_prefix(redis_url, prefix)

