"""Join/leave of one client without a socket: refusals, sync first, nothing lost while the sync is
read, leave hooks (also for what a closing client still had), routing by group and item."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from modules.stream.hub import Hub, StreamClient
from modules.stream.messages import Join, Leave, change, wrapper
from modules.stream.outbox import ClientOutbox
from modules.stream.session import ClientSession
from supervisor.errors import InvocationError


class FakeHooks:
    def __init__(self, data: dict[tuple[str, str, str | None], Any] | None = None) -> None:
        self.data = data or {}
        self.allow = True
        self.joins: list[dict[str, Any]] = []
        self.leaves: list[dict[str, Any]] = []
        self.logs: list[str] = []
        self.snapshot_gate: asyncio.Event | None = None
        self.fail_snapshot = False

    async def authorize_join(self, payload: dict[str, Any]) -> bool:
        self.joins.append(payload)
        return self.allow

    async def snapshot(self, stream_name: str, group_id: str, item_id: str | None) -> Any:
        if self.snapshot_gate is not None:
            await self.snapshot_gate.wait()
        if self.fail_snapshot:
            raise InvocationError("store down", code="STREAM_GET_ERROR")
        return self.data.get((stream_name, group_id, item_id))

    def left(self, payload: dict[str, Any]) -> None:
        self.leaves.append(payload)

    def log(self, level: str, message: str, **fields: Any) -> None:
        self.logs.append(message)


def make_client(hub: Hub, hooks: FakeHooks, *, max_subscriptions: int = 10) -> tuple[ClientSession, StreamClient]:
    client = StreamClient("c1", "127.0.0.1:5000", {"user": "ann"}, ClientOutbox(100, 1 << 20, lambda r: None))
    return ClientSession(hub, client, hooks, max_subscriptions=max_subscriptions), client


def received(client: StreamClient) -> list[dict[str, Any]]:
    out = [json.loads(m) for m in client.outbox._queue]
    client.outbox._queue.clear()
    return out


def test_group_join_syncs_then_routes_group_and_item_events() -> None:
    async def main() -> None:
        hub, hooks = Hub(), FakeHooks({("chat", "room", None): [{"id": "m1"}], ("chat", "room", "m2"): {"id": "m2"}})
        session, client = make_client(hub, hooks)
        await session.handle(Join("g", "chat", "room"))
        await session.handle(Join("i", "chat", "room", "m2"))
        assert hooks.joins[0] == {"subscription_id": "g", "stream_name": "chat", "group_id": "room", "id": None,
                                  "context": {"user": "ann"}}
        syncs = received(client)
        assert [(m["id"], m["event"]) for m in syncs] == [(None, {"type": "sync", "data": [{"id": "m1"}]}),
                                                          ("m2", {"type": "sync", "data": {"id": "m2"}})]
        assert hub.publish(wrapper("chat", "room", "m2", change("update", {"id": "m2", "v": 2}))) == 2
        assert hub.publish(wrapper("chat", "room", "m9", change("create", {"id": "m9"}))) == 1
        assert hub.publish(wrapper("chat", "other", "m9", change("create", {}))) == 0
        assert hub.publish(wrapper("news", "room", "m9", change("create", {}))) == 0
        events = received(client)
        assert [(m["id"], m["event"]["type"]) for m in events] == [("m2", "update"), ("m2", "update"), ("m9", "create")]

    asyncio.run(main())


def test_refused_join_gets_unauthorized_and_no_subscription() -> None:
    async def main() -> None:
        hub, hooks = Hub(), FakeHooks()
        hooks.allow = False
        session, client = make_client(hub, hooks)
        await session.handle(Join("g", "chat", "secret", "x"))
        [msg] = received(client)
        assert msg["event"] == {"type": "unauthorized"} and (msg["groupId"], msg["id"]) == ("secret", "x")
        assert hub.publish(wrapper("chat", "secret", "x", change("create", {}))) == 0
        await session.handle(Leave("g", "chat", "secret", "x"))
        assert hooks.leaves == []  # never joined: no leave hook

    asyncio.run(main())


def test_events_during_the_sync_read_follow_the_sync_never_lost() -> None:
    async def main() -> None:
        hub, hooks = Hub(), FakeHooks({("chat", "room", None): []})
        hooks.snapshot_gate = asyncio.Event()
        session, client = make_client(hub, hooks)
        join = asyncio.ensure_future(session.handle(Join("g", "chat", "room")))
        for _ in range(5):
            await asyncio.sleep(0)
        assert hub.publish(wrapper("chat", "room", "m1", change("create", {"id": "m1"}))) == 1
        assert received(client) == []  # held until the snapshot is sent
        hooks.snapshot_gate.set()
        await join
        assert [m["event"]["type"] for m in received(client)] == ["sync", "create"]

    asyncio.run(main())


def test_failed_snapshot_still_subscribes_and_logs() -> None:
    async def main() -> None:
        hub, hooks = Hub(), FakeHooks()
        hooks.fail_snapshot = True
        session, client = make_client(hub, hooks)
        await session.handle(Join("g", "chat", "room"))
        assert received(client) == [] and "store down" in hooks.logs[0]
        hub.publish(wrapper("chat", "room", "m1", change("create", {})))
        assert len(received(client)) == 1

    asyncio.run(main())


def test_leave_close_and_rejoin_with_the_same_id() -> None:
    async def main() -> None:
        hub, hooks = Hub(), FakeHooks()
        session, client = make_client(hub, hooks)
        await session.handle(Join("a", "chat", "room"))
        await session.handle(Join("a", "chat", "lobby"))  # same id: replaces
        await session.handle(Join("b", "chat", "room", "m1"))
        assert hub.subscription_count() == 2
        assert hub.publish(wrapper("chat", "room", None, change("create", {}))) == 0  # item sub ignores id None
        await session.handle(Leave("b", "chat", "room", "m1"))
        assert [p["subscription_id"] for p in hooks.leaves] == ["b"]
        session.closed()
        assert [p["subscription_id"] for p in hooks.leaves] == ["b", "a"]
        assert hooks.leaves[1]["group_id"] == "lobby" and hooks.leaves[1]["context"] == {"user": "ann"}
        assert hub.subscription_count() == 0 and not hub.clients

    asyncio.run(main())


def test_subscription_limit_per_client() -> None:
    async def main() -> None:
        hub, hooks = Hub(), FakeHooks()
        session, client = make_client(hub, hooks, max_subscriptions=2)
        for sid in ("a", "b", "c"):
            await session.handle(Join(sid, "chat", "room"))
        last = received(client)[-1]
        assert last["event"] == {"type": "unauthorized"}
        assert sorted(client.subscriptions) == ["a", "b"]
        assert "already has 2 subscriptions" in hooks.logs[0]

    asyncio.run(main())


def test_a_subscription_that_piles_up_during_its_sync_drops_the_client() -> None:
    async def main() -> None:
        hub, hooks = Hub(), FakeHooks()
        hooks.snapshot_gate = asyncio.Event()
        dropped: list[str] = []
        client = StreamClient("c1", "addr", None, ClientOutbox(3, 1 << 20, dropped.append))
        session = ClientSession(hub, client, hooks, max_subscriptions=10)
        join = asyncio.ensure_future(session.handle(Join("g", "chat", "room")))
        for _ in range(5):
            await asyncio.sleep(0)
        for i in range(4):
            hub.publish(wrapper("chat", "room", str(i), change("create", {})))
        assert dropped and "while its join snapshot was read" in dropped[0]
        hooks.snapshot_gate.set()
        await join

    asyncio.run(main())
