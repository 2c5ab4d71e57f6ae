"""Pub/sub end to end: stdio and iii-sdk subscribers, a failing subscriber isolated, and Redis
spreading messages across two engine instances (issue 4)."""

from __future__ import annotations

import asyncio
import uuid

from tests.e2e.ws_client import RawWorker
from tests.services import require_redis

STDIO = '''
from iii_stdio import Worker
worker = Worker()

@worker.function("sub::stdio")
def got(data):
    worker.logger.info("stdio got", {"data": data})

@worker.function("sub::boom")
def boom(data):
    raise RuntimeError("subscriber exploded")

worker.register_trigger("subscribe", "sub::stdio", {"topic": "orders"})
worker.register_trigger("subscribe", "sub::boom", {"topic": "orders"})
worker.run()
'''

SDK = '''
import os, time
from iii import InitOptions, register_worker
iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="sdk"))
iii.register_function("sub::sdk", lambda data: print("sdk got", data, flush=True))
iii.register_trigger({"type": "subscribe", "function_id": "sub::sdk", "config": {"topic": "orders"}})
time.sleep(600)
'''


def _config(adapter: str = "", port: str = "0") -> str:
    return (f"port: {port}\nmodules:\n  - class: modules::pubsub::PubSubModule\n{adapter}"
            "  - class: modules::shell::ExecModule\n    config: {name: stdio, exec: [\"python stdio_worker.py\"]}\n"
            "  - class: modules::shell::ExecModule\n    config: {name: sdk, exec: [\"python sdk_worker.py\"]}\n")


def test_publish_fans_out_to_stdio_and_sdk_subscribers(start_engine):
    engine = start_engine(_config(), {"stdio_worker.py": STDIO, "sdk_worker.py": SDK})
    engine.wait_message("worker ready", source="stdio")
    engine.wait_message("worker connected (python 0.25.0)", source="sdk")
    engine.wait_message("function registered: sub::sdk")

    async def scenario() -> None:
        raw = await RawWorker.connect(engine.worker_url)
        try:
            # the sdk registers its trigger right after its function: poll (bounded) until it is listed
            for _ in range(200):
                regs = await raw.result("engine::registered-triggers::list", {"trigger_type": "subscribe"})
                if len(regs["registered_triggers"]) == 3:
                    break
                await asyncio.sleep(0.02)
            assert await raw.result("publish", {"topic": "orders", "data": {"id": 1}}) is None
            refused = await raw.call("publish", {"topic": "", "data": 1})
            assert refused["error"]["code"] == "topic_not_set"
        finally:
            await raw.close()

    asyncio.run(scenario())
    got = engine.wait_message("stdio got", source="stdio")
    assert got["data"] == {"id": 1}
    engine.wait_message("sdk got {'id': 1}", source="sdk")
    engine.wait_for(lambda e: "subscriber exploded" in str(e.get("message")), what="the failing subscriber logged")


def test_redis_adapter_spreads_messages_across_engine_instances(start_engine, tmp_path):
    url = require_redis()
    prefix = f"iii-test-{uuid.uuid4().hex[:8]}:"
    adapter = (f"    config:\n      adapter:\n        class: modules::pubsub::RedisAdapter\n"
               f"        config: {{redis_url: '{url}', prefix: '{prefix}'}}\n")
    receiver = start_engine(_config(adapter), {"stdio_worker.py": STDIO, "sdk_worker.py": SDK})
    receiver.wait_message("worker ready", source="stdio")
    sender_dir = tmp_path / "sender"
    sender_dir.mkdir()
    from tests.e2e.conftest import EngineProcess

    cfg = sender_dir / "config.yaml"
    cfg.write_text(f"port: 0\nmodules:\n  - class: modules::pubsub::PubSubModule\n{adapter}")
    sender = EngineProcess(sender_dir, cfg)
    try:
        sender.wait_message("engine ready")

        async def scenario() -> None:
            raw = await RawWorker.connect(sender.worker_url)
            try:
                await raw.result("publish", {"topic": "orders", "data": {"from": "other instance"}})
            finally:
                await raw.close()

        asyncio.run(scenario())
        got = receiver.wait_message("stdio got", source="stdio")
        assert got["data"] == {"from": "other instance"}
    finally:
        sender.close()
