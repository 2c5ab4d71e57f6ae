"""The join/leave protocol of one stream client, apart from its socket.

Frames of one client are handled in order (a join finishes, sync included, before the next frame).
A join asks the ``stream:join`` handlers (any ``{"unauthorized": true}`` refuses it with an
``unauthorized`` message), subscribes, then sends the ``sync`` snapshot: the item's value (or
null) for an item subscription, the group's values for a group subscription. A leave, and the
close of the socket for every subscription still open, fires ``stream:leave``.
"""

from __future__ import annotations

from typing import Any, Protocol

from modules.stream.hub import Hub, StreamClient, Subscription
from modules.stream.messages import UNAUTHORIZED, ClientMessage, Join, hook_payload, sync, wrapper
from supervisor.errors import InvocationError


class Hooks(Protocol):
    """What the module provides to every session."""

    async def authorize_join(self, payload: dict[str, Any]) -> bool: ...

    async def snapshot(self, stream_name: str, group_id: str, item_id: str | None) -> Any: ...

    def left(self, payload: dict[str, Any]) -> None: ...

    def log(self, level: str, message: str, **fields: Any) -> None: ...


class ClientSession:
    def __init__(self, hub: Hub, client: StreamClient, hooks: Hooks, *, max_subscriptions: int) -> None:
        self.hub = hub
        self.client = client
        self.hooks = hooks
        self.max_subscriptions = max_subscriptions
        hub.clients[client.id] = client

    async def handle(self, msg: ClientMessage) -> None:
        if isinstance(msg, Join):
            await self._join(msg)
        else:
            self._leave(msg.subscription_id)

    async def _join(self, msg: Join) -> None:
        client = self.client
        if msg.subscription_id not in client.subscriptions and len(client.subscriptions) >= self.max_subscriptions:
            self.hooks.log("warn", f"stream client {client.addr}: join {msg.stream_name}/{msg.group_id} refused: "
                           f"it already has {self.max_subscriptions} subscriptions (max_subscriptions_per_client)")
            client.send(wrapper(msg.stream_name, msg.group_id, msg.item_id, UNAUTHORIZED))
            return
        payload = hook_payload(msg, client.context)
        if not await self.hooks.authorize_join(payload):
            client.send(wrapper(msg.stream_name, msg.group_id, msg.item_id, UNAUTHORIZED))
            return
        sub = Subscription(client, msg.subscription_id, msg.stream_name, msg.group_id, msg.item_id)
        self.hub.add(sub)
        try:
            data = await self.hooks.snapshot(msg.stream_name, msg.group_id, msg.item_id)
        except InvocationError as exc:
            # Subscribed without a snapshot (as the original): live events still flow.
            self.hooks.log("warn", f"stream client {client.addr}: no sync for {msg.stream_name}/{msg.group_id}"
                           f"{'/' + msg.item_id if msg.item_id else ''}: {exc.message}", code=exc.code)
        else:
            client.send(wrapper(msg.stream_name, msg.group_id, msg.item_id, sync(data)))
        self.hub.activate(sub)

    def _leave(self, subscription_id: str) -> None:
        sub = self.client.subscriptions.get(subscription_id)
        if sub is None:
            return  # never joined (or refused): nothing to leave, no hook
        self.hub.remove(sub)
        self.hooks.left(hook_payload(sub, self.client.context))

    def closed(self) -> None:
        """The socket is gone: drop the client and fire `stream:leave` for what it still had."""
        for sub in self.hub.remove_client(self.client):
            self.hooks.left(hook_payload(sub, self.client.context))
