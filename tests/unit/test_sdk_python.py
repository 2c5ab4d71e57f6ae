"""The Python worker SDK (iii_stdio), driven over real pipes by a fake engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from .sdk_fake_engine import TIMEOUT, FakeEngine, worker_env
except ImportError:  # tests/unit is not a package: pytest put this folder on sys.path
    from sdk_fake_engine import TIMEOUT, FakeEngine, worker_env  # type: ignore[no-redef]

PREAMBLE = """\
import asyncio, os, sys
from iii_stdio import InvocationError, Worker, current_invocation
worker = Worker()
"""


def rpc(method: str, params: object, id: object = None) -> dict:
    """An engine -> worker message; a notification when ``id`` is None."""
    message = {"jsonrpc": "2.0", "method": method, "params": params}
    if id is not None:
        message["id"] = id
    return message


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    engines: list[FakeEngine] = []

    def _start(body: str, preamble: str = PREAMBLE, **env: str) -> FakeEngine:
        script = tmp_path / f"worker{len(engines)}.py"
        script.write_text(preamble + textwrap.dedent(body))
        engine = FakeEngine(script, **env)
        engines.append(engine)
        return engine

    yield _start
    for engine in engines:
        engine.kill()


BASIC = """
@worker.function("math::add", description="adds")
def add(data):
    return data["a"] + data["b"]

@worker.function("math::add_async")
async def add_async(data):
    await asyncio.sleep(0)
    return data["a"] + data["b"]

@worker.function("ctx::whoami")
def whoami(data):
    inv = current_invocation()
    return [inv.invocation_id, inv.function_id, inv.traceparent, inv.baggage, inv.metadata]

@worker.function("fail::boom")
def boom(data):
    raise ValueError("boom")

@worker.function("fail::custom")
async def custom(data):
    raise InvocationError("invalid_params", "a is required")

@worker.function("io::print")
def noisy(data):
    print("hello from print")
    sys.stdout.write("no newline yet")
    os.write(1, b"raw fd 1 write\\n")
    os.system("echo from a child process")
    return "quiet"

worker.run()
"""


def test_registration_ready_and_invokes(start) -> None:
    engine = start(BASIC)
    regs = engine.handshake()
    assert [r["method"] for r in regs] == ["register_function"] * 6
    assert regs[0]["params"] == {"id": "math::add", "description": "adds"}
    assert len({r["id"] for r in regs}) == 6

    engine.invoke("inv-1", "math::add", {"a": 2, "b": 3})
    assert engine.response("inv-1") == {"jsonrpc": "2.0", "id": "inv-1", "result": 5}
    engine.invoke("inv-2", "math::add_async", {"a": 4, "b": 5})
    assert engine.response("inv-2")["result"] == 9
    engine.invoke("inv-3", "ctx::whoami", None, traceparent="00-abc-def-01", baggage="k=v", metadata={"m": 1})
    assert engine.response("inv-3")["result"] == ["inv-3", "ctx::whoami", "00-abc-def-01", "k=v", {"m": 1}]
    # now known to be quick, it runs on the reader thread: its own context there too, none left after
    engine.invoke("inv-4", "ctx::whoami", None, traceparent="00-abc-fed-01")
    assert engine.response("inv-4")["result"] == ["inv-4", "ctx::whoami", "00-abc-fed-01", None, None]
    engine.invoke("inv-5", "ctx::whoami")
    assert engine.response("inv-5")["result"] == ["inv-5", "ctx::whoami", None, None, None]


def test_handler_errors(start) -> None:
    engine = start(BASIC)
    engine.handshake()

    for call_id in ("e1", "e1-again"):  # the second runs on the reader thread (the handler is quick)
        engine.invoke(call_id, "fail::boom", {})
        error = engine.response(call_id)["error"]
        assert error["code"] == -32000
        assert error["message"] == "ValueError: boom"
        assert error["data"]["code"] == "invocation_failed"
        assert (
            "Traceback" in error["data"]["stacktrace"]
            and 'raise ValueError("boom")' in error["data"]["stacktrace"]
        )

    engine.invoke("e2", "fail::custom", {})
    error = engine.response("e2")["error"]
    assert error == {"code": -32000, "message": "a is required", "data": {"code": "invalid_params"}}

    engine.invoke("e3", "nope::missing", {})
    assert engine.response("e3")["error"]["data"]["code"] == "function_not_found"

    engine.send({"jsonrpc": "2.0", "id": "e4", "method": "invoke", "params": {"data": 1}})
    assert engine.response("e4")["error"]["code"] == -32602


def test_print_goes_to_stderr_and_protocol_stays_clean(start) -> None:
    engine = start(BASIC)
    engine.handshake()
    engine.invoke("p1", "io::print", {})
    assert engine.response("p1")["result"] == "quiet"
    engine.invoke("p2", "math::add", {"a": 1, "b": 1})
    assert engine.response("p2")["result"] == 2
    engine.close_stdin()
    assert engine.wait() == 0
    stderr = engine.stderr(timeout=TIMEOUT)
    for text in ("hello from print", "no newline yet", "raw fd 1 write", "from a child process"):
        assert text in stderr
    for line in engine.raw_stdout:  # every byte on stdout is a protocol frame
        assert isinstance(json.loads(line), dict)


def test_registration_error_raises_at_the_call(start) -> None:
    engine = start(
        """
        def f(data):
            return 1
        try:
            worker.register_function("dup::fn", f)
        except InvocationError as exc:
            worker.log("error", "registration failed", {"code": exc.code, "message": exc.message})
        try:
            worker.register_trigger("cron", "dup::fn", {"expression": "bad"})
        except InvocationError as exc:
            worker.log("error", "trigger failed", {"code": exc.code})
        worker.run()
        """
    )
    request = engine.expect("register_function")
    engine.reply_error(request, "function_already_registered", "dup::fn exists")
    log = engine.expect("log", request=False)
    assert log["params"] == {
        "level": "error",
        "message": "registration failed",
        "data": {"code": "function_already_registered", "message": "dup::fn exists"},
    }
    request = engine.expect("register_trigger")
    assert request["params"] == {"type": "cron", "function_id": "dup::fn", "config": {"expression": "bad"}}
    engine.reply_error(request, "invalid_params", "bad cron expression")
    assert engine.expect("log", request=False)["params"]["data"] == {"code": "invalid_params"}
    engine.expect("ready", request=False)
    engine.invoke("i1", "dup::fn", {})  # the failed registration left nothing behind
    assert engine.response("i1")["error"]["data"]["code"] == "function_not_found"


def test_http_decorator_and_trigger_lifecycle(start) -> None:
    engine = start(
        """
        @worker.http("post", "/add")
        def add_http(req):
            return {"status_code": 200, "body": {"sum": req["body"]["a"] + req["body"]["b"]}}

        tid = worker.register_trigger("cron", "http::POST /add", {"expression": "* * * * *"}, id="t-9")
        worker.unregister_trigger(tid)
        worker.unregister_function("http::POST /add")
        worker.run()
        """
    )
    regs = engine.handshake()
    assert [(r["method"], r["params"]) for r in regs] == [
        ("register_function", {"id": "http::POST /add"}),
        (
            "register_trigger",
            {
                "type": "http",
                "function_id": "http::POST /add",
                "config": {"api_path": "/add", "http_method": "POST"},
            },
        ),
        (
            "register_trigger",
            {
                "id": "t-9",
                "type": "cron",
                "function_id": "http::POST /add",
                "config": {"expression": "* * * * *"},
            },
        ),
        ("unregister_trigger", {"id": "t-9"}),
        ("unregister_function", {"id": "http::POST /add"}),
    ]


NESTED = """
@worker.function("chain::sync")
def chain_sync(data):
    result = worker.trigger("math::double", {"n": data["n"]}, timeout_ms=1000)
    worker.trigger_void("audit::record", {"n": data["n"]})
    return result + 1

@worker.function("chain::async")
async def chain_async(data):
    result = await worker.trigger_async("math::double", {"n": data["n"]})
    return result + 1

@worker.function("chain::fails")
def chain_fails(data):
    return worker.trigger("math::missing", {})

@worker.function("echo")
def echo(data):
    return data

worker.run()
"""


def test_nested_trigger_from_sync_handler(start) -> None:
    engine = start(NESTED)
    engine.handshake()
    engine.invoke("n1", "chain::sync", {"n": 20}, traceparent="00-trace-span-01", baggage="user=7")
    call = engine.expect("trigger")
    assert call["params"] == {
        "function_id": "math::double",
        "payload": {"n": 20},
        "timeout_ms": 1000,
        "traceparent": "00-trace-span-01",
        "baggage": "user=7",
    }
    # while that handler waits for its reply, the worker keeps serving other calls
    engine.invoke("n2", "echo", "still serving")
    assert engine.response("n2")["result"] == "still serving"
    engine.reply(call, 40)
    void = engine.expect("trigger", request=False)
    assert void["params"] == {
        "function_id": "audit::record",
        "payload": {"n": 20},
        "traceparent": "00-trace-span-01",
        "baggage": "user=7",
    }
    assert engine.response("n1")["result"] == 41


def test_nested_trigger_from_async_handler_and_error_propagation(start) -> None:
    engine = start(NESTED)
    engine.handshake()
    engine.invoke("a1", "chain::async", {"n": 5}, traceparent="00-t-s-01")
    call = engine.expect("trigger")
    assert call["params"] == {"function_id": "math::double", "payload": {"n": 5}, "traceparent": "00-t-s-01"}
    engine.reply(call, 10)
    assert engine.response("a1")["result"] == 11

    engine.invoke("a2", "chain::fails", {})
    call = engine.expect("trigger")
    engine.reply_error(call, "function_not_found", "math::missing not found")
    error = engine.response("a2")["error"]
    assert error["data"]["code"] == "function_not_found"
    assert error["message"] == "math::missing not found"


def test_async_handlers_are_detected_through_wrappers(start) -> None:
    engine = start(
        """
        import functools

        class Doubler:
            async def __call__(self, data):
                await asyncio.sleep(0)
                return [data * 2, current_invocation().function_id]

        async def add(a, data):
            return a + data

        def returns_coroutine(data):  # a sync wrapper around async code
            return add(100, data)

        worker.register_function("obj::double", Doubler())
        worker.register_function("partial::add", functools.partial(add, 10))
        worker.register_function("wrap::add", returns_coroutine)
        try:
            async def agen(data):
                yield data
            worker.register_function("bad::agen", agen)
        except TypeError as exc:
            worker.log("error", str(exc))
        worker.run()
        """
    )
    for _ in range(3):
        engine.reply(engine.expect("register_function"))
    assert "async generator" in engine.expect("log", request=False)["params"]["message"]
    engine.expect("ready", request=False)
    for inv_id, function_id, expected in [
        ("d", "obj::double", [42, "obj::double"]),
        ("p", "partial::add", 31),
        ("w", "wrap::add", 121),
    ]:
        engine.invoke(inv_id, function_id, 21)
        assert engine.response(inv_id)["result"] == expected


def test_batch_requests(start) -> None:
    engine = start(BASIC)
    engine.handshake()
    engine.send(
        [
            rpc("invoke", {"function_id": "math::add", "data": {"a": 1, "b": 2}}, "b1"),
            rpc("invoke", {"function_id": "math::add", "data": {"a": 0, "b": 0}}),  # notification
            rpc("invoke", {"function_id": "math::add_async", "data": {"a": 3, "b": 4}}, "b2"),
            rpc("no_such_method", {}, "b3"),
            42,
        ]
    )
    responses = engine.recv()
    assert isinstance(responses, list)
    by_id = {r["id"]: r for r in responses}
    assert len(responses) == 4
    assert by_id["b1"]["result"] == 3 and by_id["b2"]["result"] == 7
    assert by_id["b3"]["error"]["code"] == -32601
    assert by_id[None]["error"]["code"] == -32600

    engine.send([])
    error = engine.recv()
    assert isinstance(error, dict) and error["id"] is None and error["error"]["code"] == -32600

    engine.send([rpc("invoke", {"function_id": "math::add", "data": {"a": 0, "b": 0}})])
    engine.invoke("after", "math::add", {"a": 1, "b": 1})  # a batch of notifications gets no answer
    assert engine.response("after")["result"] == 2


GATED = """
import threading
gate, marked, count_lock = threading.Event(), threading.Event(), threading.Lock()
running = peak = 0

@worker.function("gate::wait")
def wait(data):
    global running, peak
    with count_lock:
        running += 1
        peak = max(peak, running)
    try:
        return gate.wait(5)
    finally:
        with count_lock:
            running -= 1

@worker.function("gate::mark")
def mark(data):
    marked.set()
    return "marked"

@worker.function("gate::open")
async def open_gate(data):
    gate.set()
    return True

@worker.function("gate::open_when_marked")
async def open_when_marked(data):
    ok = marked.wait(5)  # blocks the loop thread only, which nothing else here needs
    gate.set()
    return ok

@worker.function("gate::stats")
async def stats(data):
    return {"running": running, "peak": peak}

worker.run()
"""


def _wait_running(engine: FakeEngine, n: int) -> None:
    """Poll the async stats handler until ``n`` sync handlers are blocked (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        engine.invoke("stats", "gate::stats")
        if engine.response("stats")["result"]["running"] == n:
            return
        assert time.monotonic() < deadline, f"never {n} handlers running"


def _results(engine: FakeEngine, n: int) -> dict:
    responses = [engine.recv() for _ in range(n)]
    assert all(isinstance(r, dict) for r in responses), responses
    return {r["id"]: r.get("result", r.get("error")) for r in responses}


def test_blocked_sync_handlers_do_not_stop_the_worker(start) -> None:
    """A sync handler runs on the thread that read its call, so the reading must have moved
    on to another thread first: blocked handlers never hold up the calls behind them."""
    engine = start(GATED)
    engine.handshake()
    engine.invoke("w1", "gate::wait")
    engine.invoke("w2", "gate::wait")
    _wait_running(engine, 2)
    engine.invoke("m", "gate::mark")  # a sync call while two sync handlers block
    assert engine.response("m")["result"] == "marked"
    engine.invoke("o", "gate::open")
    assert _results(engine, 3) == {"o": True, "w1": True, "w2": True}


def test_sync_handlers_in_a_batch_do_not_wait_for_each_other(start) -> None:
    engine = start(GATED)
    engine.handshake()
    wait, mark = {"function_id": "gate::wait"}, {"function_id": "gate::mark"}
    engine.send([rpc("invoke", wait, "bw"), rpc("invoke", mark, "bm")])
    engine.invoke("o", "gate::open_when_marked")  # True only if mark ran while wait blocked
    first, second = engine.recv(), engine.recv()
    single, batch = (first, second) if isinstance(first, dict) else (second, first)
    assert single == {"jsonrpc": "2.0", "id": "o", "result": True}
    assert isinstance(batch, list) and {r["id"]: r["result"] for r in batch} == {"bw": True, "bm": "marked"}


def test_max_threads_bounds_the_sync_handlers_running_at_once(start) -> None:
    engine = start(GATED, preamble=PREAMBLE.replace("Worker()", "Worker(max_threads=2)"))
    engine.handshake()
    for i in range(3):
        engine.invoke(f"w{i}", "gate::wait")
    _wait_running(engine, 2)
    engine.invoke("m", "gate::mark")  # waits for a free thread, but the reading goes on:
    engine.invoke("o", "gate::open")  # the async handler is served
    assert engine.response("o")["result"] is True
    assert _results(engine, 4) == {"w0": True, "w1": True, "w2": True, "m": "marked"}
    engine.invoke("stats", "gate::stats")
    assert engine.response("stats")["result"] == {"running": 0, "peak": 2}


QUICK = """
import threading
gate = threading.Event()

@worker.function("quick::maybe_block")
def maybe_block(data):
    return gate.wait(5) if data == "block" else "quick"

@worker.function("quick::maybe_call")
def maybe_call(data):
    return worker.trigger("math::double", 21, 1000) if data == "call" else "quick"

@worker.function("quick::open")
async def open_gate(data):
    gate.set()
    return True

worker.run()
"""


def _learn_quick(engine: FakeEngine, function_id: str) -> None:
    """Quick calls first: the SDK then runs this handler on its reader thread."""
    for i in range(20):
        engine.invoke(f"q{i}", function_id, "x")
        assert engine.response(f"q{i}")["result"] == "quick"


def test_a_quick_handler_that_blocks_does_not_stall_the_reading(start) -> None:
    engine = start(QUICK)
    engine.handshake()
    _learn_quick(engine, "quick::maybe_block")
    engine.invoke("b", "quick::maybe_block", "block")  # runs inline and blocks until "o" is read
    engine.invoke("o", "quick::open")
    assert _results(engine, 2) == {"o": True, "b": True}  # b would give False after 5 s


def test_a_quick_handler_can_call_the_engine(start) -> None:
    engine = start(QUICK)
    engine.handshake()
    _learn_quick(engine, "quick::maybe_call")
    engine.invoke("c", "quick::maybe_call", "call")
    call = engine.expect("trigger")
    assert call["params"]["function_id"] == "math::double"
    engine.reply(call, 42)  # read by another thread: the handler's own waits for this reply
    assert engine.response("c")["result"] == 42
    _learn_quick(engine, "quick::maybe_call")  # and the worker goes on serving


MIXED = """
import time

@worker.function("mix::fast")
def fast(n):
    return n

@worker.function("mix::sometimes_slow")
def sometimes_slow(n):
    if n % 7 == 0:
        time.sleep(0.003)  # longer than a watchdog tick: the reading moves on
    return n

@worker.function("mix::calls")
def calls(n):
    return worker.trigger("engine::echo", n, 2000)

@worker.function("mix::async")
async def in_loop(n):
    return n

worker.run()
"""


def test_the_reading_never_waits_for_a_handler_slot(start) -> None:
    """Both slots taken (one by a blocked pool handler, one by a quick handler that blocks on the
    reader thread): the reading must still move to another thread, or "o" is never read."""
    gated_and_quick = GATED.replace("worker.run()", "") + QUICK.split("@worker.function(\"quick::maybe_call\")")[0]
    engine = start(gated_and_quick + "worker.run()\n", preamble=PREAMBLE.replace("Worker()", "Worker(max_threads=2)"))
    engine.handshake()
    _learn_quick(engine, "quick::maybe_block")
    engine.invoke("w", "gate::wait")
    _wait_running(engine, 1)
    engine.invoke("b", "quick::maybe_block", "block")  # inline, in the second slot
    engine.invoke("o", "gate::open")
    assert _results(engine, 3) == {"o": True, "w": True, "b": True}  # w and b give False after 5 s


def test_many_mixed_calls_each_get_one_answer(start) -> None:
    """Quick, sometimes-slow, engine-calling and async handlers, 600 calls in flight at once:
    every call is answered exactly once, with its own result (no reader lost, none doubled)."""
    engine = start(MIXED, preamble=PREAMBLE.replace("Worker()", "Worker(max_threads=4)"))
    engine.handshake()
    kinds = ["mix::fast", "mix::sometimes_slow", "mix::calls", "mix::async"]
    for n in range(40):  # teach the worker which handlers are quick
        engine.invoke(f"warm{n}", kinds[n % 2], n)
        assert engine.response(f"warm{n}")["result"] == n
    expected = {f"c{n}": n for n in range(600)}
    for n in range(600):
        engine.invoke(f"c{n}", kinds[n % 4], n)
    answers: dict[str, object] = {}
    deadline = time.monotonic() + 30
    while len(answers) < len(expected):
        assert time.monotonic() < deadline, f"{len(expected) - len(answers)} calls never answered"
        message = engine.recv()
        assert isinstance(message, dict), message
        if message.get("method") == "trigger":
            engine.reply(message, message["params"]["payload"])
        else:
            assert message["id"] not in answers, f"{message['id']} answered twice"
            answers[message["id"]] = message.get("result", message.get("error"))
    assert answers == expected


def test_malformed_lines_and_unknown_methods(start) -> None:
    engine = start(BASIC)
    engine.handshake()
    engine.send_raw(b"{not json\n")
    error = engine.recv()
    assert error["id"] is None and error["error"]["code"] == -32700
    assert error["error"]["data"]["code"] == "parse_error"
    engine.send_raw(b"\xff\xfe\n")  # not UTF-8
    assert engine.recv()["error"]["code"] == -32700
    engine.send({"jsonrpc": "2.0", "id": 7, "method": "frobnicate", "params": {}})
    assert engine.response(7)["error"]["code"] == -32601
    engine.send({"jsonrpc": "2.0", "method": "frobnicate"})  # unknown notification: ignored
    engine.send({"id": 8, "method": "invoke"})  # missing "jsonrpc"
    assert engine.response(8)["error"]["code"] == -32600
    engine.invoke("ok", "math::add", {"a": 1, "b": 2})
    assert engine.response("ok")["result"] == 3


def test_custom_trigger_type_callbacks(start) -> None:
    engine = start(
        """
        def on_register(trigger):
            if trigger["config"].get("reject"):
                raise InvocationError("invalid_params", "rejected by the trigger type")
            worker.log("info", "registered", trigger)

        async def on_unregister(trigger):
            worker.log("info", "unregistered", trigger)

        worker.register_trigger_type(
            "queue::topic", "topics", on_register=on_register, on_unregister=on_unregister
        )
        worker.run()
        """
    )
    assert engine.handshake()[0]["params"] == {"id": "queue::topic", "description": "topics"}
    trigger = {"id": "t1", "type": "queue::topic", "function_id": "f::g", "config": {"topic": "orders"}}
    engine.send(rpc("register_trigger", trigger, "r1"))
    log = engine.expect("log", request=False)
    assert log["params"] == {"level": "info", "message": "registered", "data": trigger}
    assert engine.response("r1") == {"jsonrpc": "2.0", "id": "r1", "result": None}

    rejected = dict(trigger, id="t2", config={"reject": True})
    engine.send(rpc("register_trigger", rejected, "r2"))
    assert engine.response("r2")["error"]["data"]["code"] == "invalid_params"

    engine.send(rpc("unregister_trigger", {"id": "t1", "type": "queue::topic"}, "r3"))
    assert engine.expect("log", request=False)["params"]["data"] == {"id": "t1", "type": "queue::topic"}
    assert engine.response("r3")["result"] is None

    engine.send(rpc("register_trigger", dict(trigger, type="other"), "r4"))
    assert engine.response("r4")["error"]["data"]["code"] == "trigger_type_not_found"


def test_logging_and_frame_limits(start) -> None:
    engine = start(
        """
        worker.logger.warning("careful", data={"x": 1})
        worker.log("debug", "dbg")

        @worker.function("big::result")
        def big(data):
            return "x" * 5000

        worker.run()
        """,
        III_MAX_FRAME_BYTES="2000",
    )
    assert engine.expect("log", request=False)["params"] == {
        "level": "warn",
        "message": "careful",
        "data": {"x": 1},
    }
    assert engine.expect("log", request=False)["params"] == {"level": "debug", "message": "dbg"}
    engine.handshake()
    engine.send_raw(
        b'{"jsonrpc":"2.0","id":"huge","method":"invoke","params":{"data":"' + b"y" * 10000 + b'"}}\n'
    )
    log = engine.expect("log", request=False)
    assert log["params"]["level"] == "error" and log["params"]["data"] == {"code": "frame_too_large"}
    engine.invoke("r1", "big::result", {})
    assert engine.response("r1")["error"]["data"]["code"] == "frame_too_large"


def test_stdin_eof_exits_promptly(start) -> None:
    engine = start(
        """
        import atexit
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        worker.run()
        """
    )
    engine.handshake()
    began = time.monotonic()
    engine.close_stdin()
    assert engine.wait() == 0
    assert time.monotonic() - began < 2.0
    assert "atexit ran" in engine.stderr(timeout=TIMEOUT)


def test_stdin_eof_before_run_exits_too(start) -> None:
    engine = start('worker.register_function("f", lambda d: d)\nworker.run()\n')
    engine.expect("register_function")
    engine.close_stdin()  # the engine went away mid-registration
    assert engine.wait() == 0


def test_sigterm_exits_cleanly(start) -> None:
    engine = start(BASIC)
    engine.handshake()
    engine.proc.send_signal(signal.SIGTERM)
    assert engine.wait() == 0


def test_refuses_to_run_from_a_terminal(tmp_path: Path) -> None:
    script = tmp_path / "w.py"
    script.write_text(PREAMBLE + "worker.run()\n")
    env = worker_env()
    del env["III_PROTOCOL"]
    primary, secondary = os.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, str(script)], stdin=secondary, capture_output=True, env=env, timeout=TIMEOUT
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == 2
    assert b"iii run" in proc.stderr and proc.stdout == b""


def test_a_bad_max_threads_is_refused_by_its_name_and_changes_nothing() -> None:
    code = (
        "import sys\nfrom iii_stdio import Worker\n"
        "try:\n    Worker(max_threads=0)\nexcept ValueError as exc:\n    sys.stderr.write(f'refused: {exc}\\n')\n"
        "Worker()\nsys.stderr.write('second worker made\\n')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=worker_env(), timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert "refused: max_threads must be >= 1, got 0" in done.stderr, done.stderr
    assert "second worker made" in done.stderr, done.stderr


def test_import_is_light() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import iii_stdio; elapsed = time.perf_counter() - t; "
        "heavy = [m for m in ('asyncio', 'inspect', 'concurrent.futures', 'logging', 'typing', 'threading', "
        "'iii_stdio.helpers') "  # helpers: loaded on first use of State/Streams/ops
        "if m in sys.modules]; print(heavy, elapsed)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=worker_env(),
        timeout=TIMEOUT,
        check=True,
    ).stdout.split(" ", 1)
    assert out[0] == "[]", out
    assert float(out[1]) < 0.2  # generous: typically ~7 ms, nearly all of it `json` (via `re`)
