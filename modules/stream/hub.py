"""Who is subscribed to what, and delivering one event to every matching subscription.

An event is encoded once and the same bytes are queued for each matching subscription (a client
joined twice to a group gets it twice, as the original; the client de-duplicates by room). Lookup
is by ``(stream_name, group_id)``, so an event costs only the subscriptions of its group.

A new subscription starts *pending*: events for it are held while its ``sync`` snapshot is read,
then sent after the snapshot. So a client sees the snapshot first and never misses a change made
between the snapshot's read and its first live event (a change may arrive twice, never zero times).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modules.stream.messages import encode
from modules.stream.outbox import ClientOutbox
from rpc.ws_frames import text_frame


@dataclass(eq=False)
class StreamClient:
    """One WebSocket connection on the stream port."""

    id: str
    addr: str
    context: Any
    outbox: ClientOutbox
    subscriptions: dict[str, Subscription] = field(default_factory=dict)

    def send(self, message: dict[str, Any]) -> bool:
        return self.outbox.put(encode(message))


@dataclass(eq=False)
class Subscription:
    client: StreamClient
    subscription_id: str
    stream_name: str
    group_id: str
    item_id: str | None
    held: list[bytes] | None = field(default_factory=list)  # events while the sync is being read; None = live


class Hub:
    def __init__(self) -> None:
        # per group, subscriptions in join order; a dict so a leave is O(1) even in a crowded group
        self._groups: dict[tuple[str, str], dict[Subscription, None]] = {}
        self.clients: dict[str, StreamClient] = {}

    def subscription_count(self) -> int:
        return sum(len(subs) for subs in self._groups.values())

    def add(self, sub: Subscription) -> None:
        """Subscribe (pending until ``activate``); a subscription id joined again replaces the old one."""
        previous = sub.client.subscriptions.get(sub.subscription_id)
        if previous is not None:
            self.remove(previous)
        sub.client.subscriptions[sub.subscription_id] = sub
        self._groups.setdefault((sub.stream_name, sub.group_id), {})[sub] = None

    def activate(self, sub: Subscription) -> None:
        """The sync was queued: send what arrived meanwhile, then deliver live."""
        held, sub.held = sub.held, None
        for message in held or ():
            if not sub.client.outbox.put(message):
                return

    def remove(self, sub: Subscription) -> None:
        key = (sub.stream_name, sub.group_id)
        subs = self._groups.get(key)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self._groups[key]
        if sub.client.subscriptions.get(sub.subscription_id) is sub:
            del sub.client.subscriptions[sub.subscription_id]

    def remove_client(self, client: StreamClient) -> list[Subscription]:
        """Forget a closed client; returns the subscriptions it still had (for `stream:leave`)."""
        self.clients.pop(client.id, None)
        left = list(client.subscriptions.values())
        for sub in left:
            self.remove(sub)
        return left

    def publish(self, message: dict[str, Any]) -> int:
        """Queue ``message`` for every subscription it matches; returns how many."""
        subs = self._groups.get((message["streamName"], message["groupId"]))
        if not subs:
            return 0
        item = message.get("id")
        data = encode(message)
        frame = text_frame(data)
        count = 0
        for sub in list(subs):  # an overflowing client is removed while we iterate
            if sub.item_id is not None and sub.item_id != item:
                continue
            count += 1
            if sub.held is not None:
                sub.held.append(data)
                if len(sub.held) > sub.client.outbox.max_messages:
                    sub.client.outbox.drop(f"client too slow: more than {sub.client.outbox.max_messages} "
                                           "messages arrived while its join snapshot was read")
            else:
                sub.client.outbox.put(data, frame)
        return count
