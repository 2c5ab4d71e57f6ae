"""Stream client protocol values: client frames parsed at the edge, exact server message shapes."""

from __future__ import annotations

import json

import pytest

from modules.stream.errors import ClientMessageError
from modules.stream.messages import (
    UNAUTHORIZED,
    Join,
    Leave,
    change,
    custom_event,
    hook_payload,
    is_refusal,
    parse_client_frame,
    sync,
    wrapper,
)


def frame(kind: str, **data: object) -> str:
    return json.dumps({"type": kind, "data": data})


def test_join_and_leave_parse_into_typed_messages() -> None:
    assert parse_client_frame(frame("join", subscriptionId="s1", streamName="chat", groupId="room")) == \
        Join("s1", "chat", "room", None)
    assert parse_client_frame(frame("leave", subscriptionId="s1", streamName="chat", groupId="room", id="m1")
                              .encode()) == Leave("s1", "chat", "room", "m1")


def test_blank_frames_are_ignored() -> None:
    assert parse_client_frame("") is None
    assert parse_client_frame("  \n") is None


@pytest.mark.parametrize(("raw", "fragment"), [
    ("{nope", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    ("[1, 2]", "must be a JSON object"),
    ('{"type": "subscribe", "data": {}}', "unknown message type 'subscribe'"),
    ('{"type": "join"}', "`data` must be an object"),
    (frame("join", streamName="chat", groupId="room"), "`data.subscriptionId`"),
    (frame("join", subscriptionId="s", streamName="", groupId="room"), "`data.streamName`"),
    (frame("join", subscriptionId="s", streamName="chat", groupId=7), "`data.groupId`"),
    (frame("join", subscriptionId="s", streamName="chat", groupId="g", id=3), "`data.id` must be a string"),
])
def test_bad_frames_name_what_is_wrong(raw: str | bytes, fragment: str) -> None:
    with pytest.raises(ClientMessageError, match=None) as info:
        parse_client_frame(raw)
    assert fragment in str(info.value)


def test_wrapper_shape_is_the_originals() -> None:
    msg = wrapper("chat", "room", "m1", change("update", {"id": "m1"}))
    assert set(msg) == {"type", "timestamp", "streamName", "groupId", "id", "event"}
    assert msg["type"] == "stream" and isinstance(msg["timestamp"], int) and msg["timestamp"] > 1_600_000_000_000
    assert msg["event"] == {"type": "update", "data": {"id": "m1"}}
    assert wrapper("chat", "room", None, sync([]))["event"] == {"type": "sync", "data": []}
    assert custom_event("typing", {"who": "ann"}) == {"type": "event",
                                                      "event": {"type": "typing", "data": {"who": "ann"}}}
    assert UNAUTHORIZED == {"type": "unauthorized"}


def test_hook_payload_and_refusal() -> None:
    assert hook_payload(Join("s1", "chat", "room", None), {"user": 1}) == {
        "subscription_id": "s1", "stream_name": "chat", "group_id": "room", "id": None, "context": {"user": 1}}
    assert is_refusal({"unauthorized": True})
    for answer in ({"unauthorized": False}, {"unauthorized": "yes"}, None, True, [], {}):
        assert not is_refusal(answer)
