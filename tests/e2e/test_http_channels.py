"""Streaming channels end to end with the published iii-sdk 0.25.0: raw request bodies through
``request_body``, streamed responses through ``response`` (the SDK's ``iii_helpers.http``),
``engine::channels::create`` between two functions, and the channel endpoint's refusals."""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
import time

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import EngineProcess

SDK_WORKER = '''
import asyncio, hashlib, os
from iii import InitOptions, register_worker
from iii.helpers import create_channel_async
from iii_helpers.http import HttpResponse, http

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="chan"))
released = asyncio.Event()


async def upload(req, res):
    raw = await req.request_body.read_all()
    return {"status_code": 200, "body": {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                                         "body": req.body}}


async def stream(req, res):
    await res.status(207)
    await res.headers({"content-type": "text/plain; charset=utf-8", "x-stream": "yes"})
    await res.writer.write(b"first;")
    try:  # the test reads "first;" over HTTP, then releases us: proof the engine streams
        await asyncio.wait_for(released.wait(), 10)
    except asyncio.TimeoutError:
        await res.writer.write(b"TIMEOUT;")
    for part in (b"second;", b"third;", b"fourth;"):
        await res.writer.write(part)
    res.close()  # as the SDK does it: fire-and-forget, the result (None) goes out first
    return None


async def release(req, res):
    released.set()
    return {"status_code": 200, "body": {"released": True}}


async def big(req, res):
    await res.headers({"content-type": "application/octet-stream"})
    for i in range(40):
        await res.writer.write(bytes([i]) * 50_000)
    res.close()


async def nothing(req, res):
    return None


async def later(req, res):
    async def write():  # connects only after the handler returned None: the engine must wait for it
        await res.status(202)
        await res.writer.write(b"late;")
        await res.writer.close_async()

    asyncio.ensure_future(write())
    return None


client_gone = asyncio.Event()
outcome = []


async def endless(req, res):
    await res.writer.write(b"start;")
    try:
        for _ in range(100_000):  # 100 MB: ends early only if the engine closes the channel on us
            await res.writer.write(b"x" * 1000)
            await asyncio.sleep(0)  # yield as a real producer does; the SDK sees the close only then
        outcome.append("wrote everything")
    except Exception as exc:
        outcome.append(type(exc).__name__)
    client_gone.set()


async def endless_outcome(req, res):
    await asyncio.wait_for(client_gone.wait(), 20)
    return {"status_code": 200, "body": {"outcome": outcome}}


async def typed(req, res):
    return HttpResponse(status_code=404, body={"missing": True}, headers={"x-typed": "1"})


async def mkchannel(req, res):
    channel = await create_channel_async(iii, buffer_size=4)
    return {"status_code": 200, "body": {"writer": channel.writer_ref.model_dump(),
                                         "reader": channel.reader_ref.model_dump()}}


async def produce(req, res):
    channel = await create_channel_async(iii, buffer_size=2)  # small: the writer must wait for the reader

    async def write():
        await channel.writer.send_message_async("meta:start")  # awaited: the SDK's fire-and-forget may reorder
        for i in range(100):
            await channel.writer.write(bytes([i % 256]) * 1000)
        await channel.writer.send_message_async("meta:end")
        await channel.writer.close_async()

    writing = asyncio.ensure_future(write())
    got = await iii.trigger_async({"function_id": "pipe::consume",
                                   "payload": {"reader": channel.reader_ref.model_dump()}})
    await writing
    return {"status_code": 200, "body": got}


async def consume(data):
    reader = data["reader"]
    messages = []
    reader.on_message(messages.append)
    raw = await reader.read_all()
    return {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "messages": messages}


ROUTES = [("POST", "/upload", upload), ("GET", "/stream", stream), ("POST", "/release", release),
          ("GET", "/big", big), ("GET", "/nothing", nothing), ("GET", "/typed", typed), ("GET", "/later", later),
          ("GET", "/endless", endless), ("GET", "/endless/outcome", endless_outcome),
          ("POST", "/mkchannel", mkchannel), ("POST", "/pipe", produce)]
for method, path, fn in ROUTES:
    fid = "chan::" + path.strip("/")
    iii.register_function(fid, http(fn))
    iii.register_trigger({"type": "http", "function_id": fid, "config": {"api_path": path, "http_method": method}})
iii.register_function("pipe::consume", consume)
'''

CONFIG = """
port: 0
modules:
  - class: modules::api::RestApiModule
    config: {host: 127.0.0.1, port: 0, default_timeout: 10000}
  - class: modules::shell::ExecModule
    config: {name: chan, exec: ["python worker.py"]}
"""


@pytest.fixture
def engine(start_engine) -> EngineProcess:  # type: ignore[no-untyped-def]
    eng: EngineProcess = start_engine(textwrap.dedent(CONFIG), {"worker.py": SDK_WORKER + "\nimport time\n"
                                                                                          "time.sleep(600)\n"})
    eng.wait_message("route added: POST /pipe", timeout=30)
    return eng


def test_raw_request_body_reaches_the_worker_through_request_body(engine: EngineProcess) -> None:
    binary = bytes(range(256)) * 4096 + b"\xff\xfe"  # ~1 MiB, not UTF-8: more than one 64 KiB frame
    with httpx.Client(base_url=engine.http_url, timeout=15) as client:
        r = client.post("/upload", content=binary, headers={"content-type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        assert r.json() == {"size": len(binary), "sha256": hashlib.sha256(binary).hexdigest(), "body": None}

        r = client.post("/upload", content="plain words, é".encode(), headers={"content-type": "text/plain"})
        assert r.json()["body"] == "plain words, é"  # body parsing as before, raw bytes as well
        assert r.json()["sha256"] == hashlib.sha256("plain words, é".encode()).hexdigest()

        r = client.post("/upload", json={"a": 1})
        assert r.json()["body"] == {"a": 1} and r.json()["size"] == len(b'{"a":1}')

        r = client.post("/upload")
        assert r.json() == {"size": 0, "sha256": hashlib.sha256(b"").hexdigest(), "body": None}


def test_sdk_http_helper_streams_status_headers_and_chunks_while_the_handler_runs(engine: EngineProcess) -> None:
    with httpx.Client(base_url=engine.http_url, timeout=15) as client, \
            httpx.Client(base_url=engine.http_url, timeout=15) as other:
        with client.stream("GET", "/stream") as r:
            assert r.status_code == 207
            assert r.headers["content-type"] == "text/plain; charset=utf-8"
            assert r.headers["x-stream"] == "yes"
            chunks = r.iter_raw()
            received = b""
            while len(received) < len(b"first;"):
                received += next(chunks)
            assert received == b"first;"  # arrived while the handler still waits for /release
            assert other.post("/release").json() == {"released": True}
            received += b"".join(chunks)
        assert received == b"first;second;third;fourth;"


def test_a_large_streamed_body_arrives_whole(engine: EngineProcess) -> None:
    expected = b"".join(bytes([i]) * 50_000 for i in range(40))
    r = httpx.get(engine.http_url + "/big", timeout=15)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert len(r.content) == len(expected) and r.content == expected


def test_null_result_without_a_channel_answers_promptly_and_a_result_wins(engine: EngineProcess) -> None:
    with httpx.Client(base_url=engine.http_url, timeout=15) as client:
        t0 = time.monotonic()
        r = client.get("/nothing")
        assert (r.status_code, r.json()) == (200, {})
        assert time.monotonic() - t0 < 5  # a short grace for a late writer, not the 10 s request timeout

        r = client.get("/typed")  # HttpResponse is sent as {"statusCode": 404, ...}
        assert r.status_code == 404 and r.json() == {"missing": True} and r.headers["x-typed"] == "1"

        r = client.get("/later")  # null result first, the writer connects just after it
        assert (r.status_code, r.content) == (202, b"late;")


def test_client_leaving_mid_stream_makes_the_workers_writes_fail(engine: EngineProcess) -> None:
    with httpx.Client(base_url=engine.http_url, timeout=15) as client:
        with client.stream("GET", "/endless") as r:
            assert r.status_code == 200
            assert next(r.iter_raw()).startswith(b"start;")
        # leaving the block closed the connection with the body unread
        outcome = client.get("/endless/outcome").json()["outcome"]
    assert outcome and outcome[0].startswith("ConnectionClosed"), outcome


def test_channel_between_two_functions_with_backpressure(engine: EngineProcess) -> None:
    r = httpx.post(engine.http_url + "/pipe", timeout=15)
    assert r.status_code == 200, r.text
    raw = b"".join(bytes([i % 256]) * 1000 for i in range(100))
    assert r.json() == {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                        "messages": ["meta:start", "meta:end"]}


def test_channel_endpoint_refuses_unknown_ids_wrong_keys_and_taken_ends(engine: EngineProcess) -> None:
    base = engine.worker_url.rstrip("/")
    refs = httpx.post(engine.http_url + "/mkchannel", timeout=15).json()
    cid, key = refs["writer"]["channel_id"], refs["writer"]["access_key"]
    assert refs["reader"]["channel_id"] == cid and refs["reader"]["access_key"] == key
    assert (refs["writer"]["direction"], refs["reader"]["direction"]) == ("write", "read")

    async def status_of(url: str) -> int:
        try:
            async with websockets.connect(url, open_timeout=10):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    async def scenario() -> None:
        assert await status_of(f"{base}/ws/channels/no-such-channel?key={key}&dir=read") == 404
        assert await status_of(f"{base}/ws/channels/{cid}?key=wrong&dir=read") == 404
        assert await status_of(f"{base}/ws/channels/{cid}?key={key}&dir=sideways") == 400
        async with websockets.connect(f"{base}/ws/channels/{cid}?key={key}&dir=read", open_timeout=10) as reader:
            assert await status_of(f"{base}/ws/channels/{cid}?key={key}&dir=read") == 409
            async with websockets.connect(f"{base}/ws/channels/{cid}?key={key}&dir=write",
                                          open_timeout=10) as writer:
                assert await status_of(f"{base}/ws/channels/{cid}?key={key}&dir=write") == 409
                for frame in ["hello", b"\x00\x01\x02", "bye"]:
                    await writer.send(frame)
            received = [frame async for frame in reader]  # ends at the engine's Close
            assert received == ["hello", b"\x00\x01\x02", "bye"]
            assert reader.close_code == 1000
        # a finished channel is gone
        assert await status_of(f"{base}/ws/channels/{cid}?key={key}&dir=read") == 404

    asyncio.run(asyncio.wait_for(scenario(), 30))


SILENT_WORKER = '''
import os, time
from iii import InitOptions, register_worker
from iii_helpers.http import http

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="silent"))


async def stuck(req, res):
    await res.writer.write(b"partial;")
    return None  # and never closes the writer (what `res.stream.end()` before connecting amounts to)


async def silent(req, res):
    await res.status(201)
    return None  # connected, said nothing more, never closes


for path, fn in [("/stuck", stuck), ("/silent", silent)]:
    iii.register_function("silent::" + path.strip("/"), http(fn))
    iii.register_trigger({"type": "http", "function_id": "silent::" + path.strip("/"),
                          "config": {"api_path": path, "http_method": "GET"}})
time.sleep(600)
'''


def test_a_writer_silent_after_the_call_is_cut_off_at_the_route_timeout(start_engine) -> None:  # type: ignore[no-untyped-def]
    config = CONFIG.replace("default_timeout: 10000", "default_timeout: 1500").replace("name: chan", "name: silent")
    eng = start_engine(textwrap.dedent(config), {"worker.py": SILENT_WORKER})
    eng.wait_message("route added: GET /silent", timeout=30)
    with httpx.Client(base_url=eng.http_url, timeout=15) as client:
        t0 = time.monotonic()
        received = b""
        with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", "/stuck") as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                received += chunk
        assert received == b"partial;"  # then an incomplete body, never a clean end
        assert 1.0 < time.monotonic() - t0 < 10

        r = client.get("/silent")  # attached but wrote no byte: no answer from the channel
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout", r.text
