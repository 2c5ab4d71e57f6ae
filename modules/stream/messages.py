"""The stream client protocol as values: client frames parsed once at the edge, server messages built
in one place, so the socket code never looks inside JSON and tests check exact shapes without sockets.

Client -> server: ``{"type": "join"|"leave", "data": {"subscriptionId", "streamName", "groupId", "id"?}}``.
Server -> client (and the ``stream`` trigger payload): the wrapper
``{"type": "stream", "timestamp": <ms>, "streamName", "groupId", "id": <item|null>, "event": E}``
with ``E`` one of ``sync``, ``create``, ``update``, ``delete``, ``event`` (custom) or ``unauthorized``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from modules.stream.errors import ClientMessageError
from supervisor.core import jsoncodec

encode = jsoncodec.dumps  # UTF-8 bytes: the frame's payload as it is sent


@dataclass(frozen=True, slots=True)
class Join:
    subscription_id: str
    stream_name: str
    group_id: str
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    subscription_id: str
    stream_name: str
    group_id: str
    item_id: str | None = None


ClientMessage = Join | Leave


def parse_client_frame(raw: str | bytes) -> ClientMessage | None:
    """A join/leave, or None for a blank frame (ignored, as the original does)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise ClientMessageError("frame is not UTF-8 text") from None
    if not raw.strip():
        return None
    try:
        frame = jsoncodec.loads(raw)
    except ValueError:
        raise ClientMessageError("frame is not JSON") from None
    if not isinstance(frame, dict):
        raise ClientMessageError(f"frame must be a JSON object, got {type(frame).__name__}")
    kind = frame.get("type")
    if kind not in ("join", "leave"):
        raise ClientMessageError(f"unknown message type {kind!r} (a client sends \"join\" or \"leave\")")
    data = frame.get("data")
    if not isinstance(data, dict):
        raise ClientMessageError(f"{kind}: `data` must be an object with subscriptionId, streamName, groupId")
    fields = [_text(data, kind, name) for name in ("subscriptionId", "streamName", "groupId")]
    item = data.get("id")
    if item is not None and not isinstance(item, str):
        raise ClientMessageError(f"{kind}: `data.id` must be a string (an item id) or left out")
    cls = Join if kind == "join" else Leave
    return cls(fields[0], fields[1], fields[2], item)


def _text(data: dict[str, Any], kind: str, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ClientMessageError(f"{kind}: `data.{name}` must be a non-empty string")
    return value


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wrapper(stream_name: str, group_id: str, item_id: str | None, event: dict[str, Any]) -> dict[str, Any]:
    """The message clients receive and ``stream`` triggers get (camelCase, as the original)."""
    return {"type": "stream", "timestamp": now_ms(), "streamName": stream_name, "groupId": group_id,
            "id": item_id, "event": event}


def change(kind: str, data: Any) -> dict[str, Any]:
    """``create`` / ``update`` (the new value) or ``delete`` (the old value)."""
    return {"type": kind, "data": data}


def custom_event(event_type: str, data: Any) -> dict[str, Any]:
    """What ``stream::send`` emits."""
    return {"type": "event", "event": {"type": event_type, "data": data}}


def sync(data: Any) -> dict[str, Any]:
    return {"type": "sync", "data": data}


UNAUTHORIZED: dict[str, Any] = {"type": "unauthorized"}


class Address(Protocol):
    """What a join/leave names: a client message, or a subscription made by one."""

    @property
    def subscription_id(self) -> str: ...

    @property
    def stream_name(self) -> str: ...

    @property
    def group_id(self) -> str: ...

    @property
    def item_id(self) -> str | None: ...


def hook_payload(msg: Address, context: Any) -> dict[str, Any]:
    """The ``stream:join`` / ``stream:leave`` trigger payload."""
    return {"subscription_id": msg.subscription_id, "stream_name": msg.stream_name, "group_id": msg.group_id,
            "id": msg.item_id, "context": context}


def is_refusal(result: Any) -> bool:
    """A join handler refuses with ``{"unauthorized": true}``; anything else lets the client in."""
    return isinstance(result, dict) and result.get("unauthorized") is True
