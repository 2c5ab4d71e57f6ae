"""The example app (examples/orders) run by the repository's own config.yaml, as a user runs it.

Each test copies the root ``config.yaml`` and ``examples/orders`` into a temp folder (``sdk`` is
linked in, so the Node API finds ``../../sdk/node`` as it does in the repository), and starts
``iii run`` there with the ports set to 0 through the config's ``${VAR:default}`` placeholders; the
data folder is the default one, next to the config. Then it checks the whole flow across the three
workers: HTTP (Node) -> pricing (remote iii-sdk worker, Python) -> queue -> Python stdio worker ->
state -> a real WebSocket client on the stream port; retries, the dead-letter queue, the cron
report, and hot reload of the Node and the Python file.

All of it needs Node: without it these tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from tests.e2e.conftest import REPO, EngineProcess
from tests.services import require_tools

WAIT = 15.0  # seconds any single expected event may take
FLAKY = "4000000000000119"  # examples/orders/worker.py: fails once, then approved
DECLINED = "4000000000000002"  # always declined -> dead-letter queue
ENV = {
    "III_PORT": "0", "HTTP_PORT": "0", "STREAM_PORT": "0",  # any free ports
    "ORDERS_BACKOFF_MS": "100",  # retries after 0.1 s, 0.2 s
    "ORDERS_REPORT_CRON": "* * * * * *",  # the report every second
}



@pytest.fixture(scope="module")
def node() -> str:
    return require_tools("node", purpose="the example app's HTTP API is a Node.js worker (Node 18 or later)")[0]


class App:
    def __init__(self, engine: EngineProcess) -> None:
        self.engine = engine
        self.dir = engine.app_dir
        self.http = httpx.Client(base_url=engine.http_url, timeout=WAIT)
        event = engine.wait_message("stream server listening on ")
        self.stream_url = str(event["message"]).split("listening on ", 1)[1].strip()

    def order(self, customer: str, items: list[dict[str, Any]], card: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"customer": customer, "items": items}
        if card is not None:
            body["card"] = card
        return self.http.post("/orders", json=body)

    def wait_ready(self, after: int = 0) -> None:
        """Every worker has registered: the Node routes, the Python cron job, the remote worker's functions."""
        for fragment in ("route added: POST /admin/dead-letters/redrive", "cron job ",
                         "function registered: notifications::send"):
            self.engine.wait_message(fragment, after=after, timeout=WAIT)

    def wait_log(self, fragment: str, source: str | None = None, after: int = 0) -> dict[str, Any]:
        return self.engine.wait_message(fragment, source=source, after=after, timeout=WAIT)


@pytest.fixture
def app(node: str, tmp_path: Path) -> Iterator[Callable[[], App]]:
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(REPO / "examples" / "orders", tmp_path / "examples" / "orders",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "sdk").symlink_to(REPO / "sdk", target_is_directory=True)
    apps: list[App] = []

    def start() -> App:
        engine = EngineProcess(tmp_path, tmp_path / "config.yaml", ENV)
        try:
            started = App(engine)
        except BaseException:
            engine.close()
            raise
        apps.append(started)
        started.wait_ready()
        return started

    yield start
    for a in apps:
        a.http.close()
        a.engine.close()


@asynccontextmanager
async def watching(url: str, group: str) -> AsyncIterator[Callable[..., Any]]:
    """A WebSocket client joined to stream `orders`, group `group`; yields ``until(pred)`` which
    returns the order updates received up to the first one matching ``pred``."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"type": "join", "data": {"subscriptionId": "t", "streamName": "orders",
                                                     "groupId": group}})
        first = json.loads((await ws.receive(timeout=WAIT)).data)
        assert first["event"]["type"] == "sync", first

        async def until(pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            while True:
                msg = await ws.receive(timeout=WAIT)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                data = json.loads(msg.data)
                assert data["streamName"] == "orders" and data["groupId"] == group, data
                assert data["event"]["type"] in ("create", "update"), data
                seen.append(data["event"]["data"])
                if pred(seen[-1]):
                    return seen

        yield until


def statuses(updates: list[dict[str, Any]], order_id: str) -> list[str]:
    return [u["status"] for u in updates if u["id"] == order_id]


def test_order_flows_through_node_pricing_queue_python_state_and_stream(app):
    a = app()
    assert a.http.get("/orders/ord-1").status_code == 404

    async def scenario() -> None:
        async with watching(a.stream_url, "all") as all_orders, watching(a.stream_url, "ada") as ada:
            r = await asyncio.to_thread(a.order, "ada", [{"sku": "tea", "qty": 2}, {"sku": "scone", "qty": 1}])
            assert r.status_code == 202, r.text
            # 2 x tea 300 + scone 325: the price came from the remote iii-sdk worker
            assert r.json() == {"id": "ord-1", "status": "pending", "total_cents": 925, "message": "order accepted"}
            for client in (all_orders, ada):
                updates = await client(lambda o: o["status"] == "paid")
                assert statuses(updates, "ord-1") == ["pending", "paid"]  # Node pushed one, Python the other
                assert "card" not in updates[-1] and updates[-1]["customer"] == "ada"

    asyncio.run(scenario())
    order = a.http.get("/orders/ord-1").json()
    assert order["status"] == "paid" and order["attempts"] == 1 and order["card"] == "**** 4242"
    assert order["note"] == "thank you for your order" and "last_error" not in order
    assert [line["cents"] for line in order["items"]] == [600, 325]
    notified = a.wait_log("notify ada: order paid", source="pricing")  # the remote worker was called back
    assert "ord-1" in notified["message"]
    assert a.http.get("/orders").json()[0]["id"] == "ord-1"

    bad = a.http.post("/orders", json={"customer": "", "items": [{"sku": "tea", "qty": 0}, "x"], "card": "12"})
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid order", "problems": [
        'customer: required, 1-40 letters, digits, "-" or "_"',
        "items[0].qty: must be a whole number from 1 to 100",
        'items[1]: must be an object {"sku": string, "qty": number}',
        "card: must be 16 digits as a string"]}
    unknown = a.order("bob", [{"sku": "cake", "qty": 1}])
    assert unknown.status_code == 400
    assert unknown.json()["problems"] == ['items: unknown sku "cake" (we sell: coffee, croissant, jam, scone, tea)']
    not_json = a.http.post("/orders", content=b"hello", headers={"content-type": "text/plain"})
    assert not_json.status_code == 400 and not_json.json()["problems"][0].startswith("body: send a JSON object")
    assert (a.dir / ".iii" / "data").is_dir()  # the app's data folder, next to config.yaml


def test_transient_failure_is_retried_and_a_declined_card_is_dead_lettered(app):
    a = app()

    async def scenario() -> None:
        async with watching(a.stream_url, "all") as updates:
            flaky = await asyncio.to_thread(a.order, "bob", [{"sku": "coffee", "qty": 1}], FLAKY)
            declined = await asyncio.to_thread(a.order, "eve", [{"sku": "jam", "qty": 3}], DECLINED)
            assert (flaky.status_code, declined.status_code) == (202, 202)
            fid, did = flaky.json()["id"], declined.json()["id"]
            seen = await updates(lambda o: o["id"] == did and o["status"] == "failed")
            if "paid" not in statuses(seen, fid):
                seen += await updates(lambda o: o["id"] == fid and o["status"] == "paid")
            assert statuses(seen, fid) == ["pending", "retrying", "paid"]
            assert statuses(seen, did) == ["pending", "retrying", "retrying", "failed"]
            retry = next(u for u in seen if u["id"] == fid and u["status"] == "retrying")
            assert retry["attempts"] == 1 and retry["last_error"] == "payment gateway timed out"

    asyncio.run(scenario())
    dead = a.wait_log("moved to the dead-letter queue after 3 attempt(s)", source="queue")
    assert "card declined" in dead["message"]
    assert a.wait_log("failed (attempt 1 of 3), retrying in 0.1 s", source="queue")
    paid = a.http.get("/orders/ord-1").json()
    assert (paid["status"], paid["attempts"], paid["charge_id"]) == ("paid", 2, "ch-ord-1-2")
    failed = a.http.get("/orders/ord-2").json()
    assert (failed["status"], failed["attempts"], failed["last_error"]) == ("failed", 3, "card declined")
    [letter] = a.http.get("/admin/dead-letters").json()
    assert letter["order"] == "ord-2" and letter["attempts"] == 3
    assert letter["error"] == "PaymentError: card declined"

    # the cron report (every second here) counts what the worker wrote
    report = a.engine.wait_for(lambda e: "report: 2 orders (failed=1, paid=1)" in str(e.get("message")),
                               timeout=WAIT, what="the cron report of both orders")
    assert report["source"] == "orders-worker"
    latest = a.http.get("/reports/latest").json()
    assert latest["orders"] == 2 and latest["by_status"] == {"failed": 1, "paid": 1}

    mark = a.engine.cursor()
    assert a.http.post("/admin/dead-letters/redrive").json() == {"queue": "orders", "redriven": 1}
    a.wait_log("moved to the dead-letter queue after 3 attempt(s)", source="queue", after=mark)  # declined again
    assert a.http.get("/orders/ord-2").json()["attempts"] == 3  # a redrive starts the attempts again


def test_editing_the_node_and_the_python_file_reloads_each(app):
    a = app()
    api = a.dir / "examples" / "orders" / "api.mjs"
    worker = a.dir / "examples" / "orders" / "worker.py"

    mark = a.engine.cursor()
    text = api.read_text()
    assert "const ACCEPTED = 'order accepted';" in text
    api.write_text(text.replace("const ACCEPTED = 'order accepted';", "const ACCEPTED = 'order accepted (v2)';"))
    a.wait_log("reloading: examples/orders/api.mjs changed", source="orders-api", after=mark)
    r = a.order("ada", [{"sku": "tea", "qty": 1}])  # waits for the new instance if it is still starting
    assert r.status_code == 202 and r.json()["message"] == "order accepted (v2)"
    assert not any("reloading" in str(e.get("message")) for e in a.engine.events[mark:]
                   if e.get("source") != "orders-api")

    mark = a.engine.cursor()
    text = worker.read_text()
    assert 'THANKS = "thank you for your order"' in text
    worker.write_text(text.replace('THANKS = "thank you for your order"', 'THANKS = "see you soon"'))
    a.wait_log("reloading: examples/orders/worker.py changed", source="orders-worker", after=mark)
    a.wait_log("cron job ", after=mark)  # the new instance registered its trigger
    order_id = a.order("ada", [{"sku": "jam", "qty": 1}]).json()["id"]
    a.wait_log(f"order {order_id} paid", source="orders-worker", after=mark)
    assert a.http.get(f"/orders/{order_id}").json()["note"] == "see you soon"
    a.wait_log(f"notify ada: order paid, see you soon ({order_id})", source="pricing", after=mark)
