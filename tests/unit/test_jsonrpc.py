"""rpc.jsonrpc: parsing lines into typed messages, and encoding replies as single lines."""

from __future__ import annotations

import json

import pytest

from rpc import jsonrpc
from rpc.jsonrpc import (
    Batch,
    ErrorResponse,
    Invalid,
    Notification,
    Request,
    Response,
    parse,
)

# -- valid messages ---------------------------------------------------------------------------


def test_request_with_object_params() -> None:
    msg = parse(b'{"jsonrpc":"2.0","id":7,"method":"register_function","params":{"id":"a"}}')
    assert msg == Request(7, "register_function", {"id": "a"})


def test_request_with_string_id_and_array_params() -> None:
    assert parse('{"jsonrpc":"2.0","id":"x-1","method":"m","params":[1,2]}') == Request("x-1", "m", [1, 2])


def test_request_without_params() -> None:
    assert parse(b'{"jsonrpc":"2.0","id":0,"method":"m"}') == Request(0, "m", None)


def test_request_with_null_params_is_allowed() -> None:
    assert parse(b'{"jsonrpc":"2.0","id":1,"method":"m","params":null}') == Request(1, "m", None)


def test_notification() -> None:
    assert parse(b'{"jsonrpc":"2.0","method":"log","params":{"level":"info"}}') == Notification(
        "log", {"level": "info"})


def test_notification_without_params() -> None:
    assert parse(b'{"jsonrpc":"2.0","method":"ready"}') == Notification("ready", None)


def test_response() -> None:
    assert parse(b'{"jsonrpc":"2.0","id":"abc","result":{"ok":true}}') == Response("abc", {"ok": True})


def test_response_with_null_result() -> None:
    assert parse(b'{"jsonrpc":"2.0","id":3,"result":null}') == Response(3, None)


def test_error_response_with_data() -> None:
    msg = parse(b'{"jsonrpc":"2.0","id":5,"error":{"code":-32000,"message":"boom",'
                b'"data":{"code":"invocation_failed","stacktrace":"tb"}}}')
    assert msg == ErrorResponse(5, -32000, "boom", {"code": "invocation_failed", "stacktrace": "tb"})


def test_error_response_defaults() -> None:
    msg = parse(b'{"jsonrpc":"2.0","id":null,"error":{}}')
    assert msg == ErrorResponse(None, jsonrpc.INTERNAL_ERROR, "", None)


def test_surrounding_whitespace_is_fine() -> None:
    assert parse(b'  {"jsonrpc":"2.0","method":"ready"}\r') == Notification("ready", None)


def test_unicode_payload() -> None:
    assert parse('{"jsonrpc":"2.0","id":1,"result":"héllo ✓"}'.encode()) == Response(1, "héllo ✓")


# -- batches ------------------------------------------------------------------------------------


def test_batch_of_mixed_items() -> None:
    msg = parse(b'[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"},'
                b'{"jsonrpc":"2.0","id":2,"result":1},5]')
    assert isinstance(msg, Batch)
    assert msg.items[:3] == [Request(1, "a", None), Notification("b", None), Response(2, 1)]
    bad = msg.items[3]
    assert isinstance(bad, Invalid)
    assert bad.reply is not None and bad.reply.code == jsonrpc.INVALID_REQUEST


def test_empty_batch_is_invalid_with_a_reply() -> None:
    msg = parse(b"[]")
    assert isinstance(msg, Invalid)
    assert msg.reply == ErrorResponse(None, jsonrpc.INVALID_REQUEST, "Invalid Request", "empty batch")


def test_nested_batch_item_is_invalid() -> None:
    msg = parse(b'[[{"jsonrpc":"2.0","method":"a"}]]')
    assert isinstance(msg, Batch)
    assert isinstance(msg.items[0], Invalid)


# -- invalid messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("line", [b"hello world", b"{not json", b"", b"\xff\xfe\x00", b'{"a":1'])
def test_not_json_is_invalid_without_reply(line: bytes) -> None:
    msg = parse(line)
    assert isinstance(msg, Invalid)
    assert msg.reply is None
    assert "not JSON" in msg.reason


@pytest.mark.parametrize("line", [b"5", b'"text"', b"null", b"true"])
def test_non_object_is_invalid_request(line: bytes) -> None:
    msg = parse(line)
    assert isinstance(msg, Invalid)
    assert msg.reply == ErrorResponse(None, jsonrpc.INVALID_REQUEST, "Invalid Request", msg.reason)
    assert "object" in msg.reason


def test_missing_jsonrpc_keeps_the_id_in_the_reply() -> None:
    msg = parse(b'{"id":4,"method":"m"}')
    assert isinstance(msg, Invalid)
    assert msg.reply is not None
    assert msg.reply.id == 4
    assert msg.reply.code == jsonrpc.INVALID_REQUEST
    assert "jsonrpc" in msg.reason


def test_wrong_jsonrpc_version() -> None:
    msg = parse(b'{"jsonrpc":"1.0","id":"q","method":"m"}')
    assert isinstance(msg, Invalid)
    assert msg.reply is not None and msg.reply.id == "q"


def test_method_not_a_string() -> None:
    msg = parse(b'{"jsonrpc":"2.0","id":1,"method":5}')
    assert isinstance(msg, Invalid)
    assert msg.reply is not None and msg.reply.id == 1
    assert "method" in msg.reason


@pytest.mark.parametrize("params", [b'"s"', b"1", b"true"])
def test_bad_params_type(params: bytes) -> None:
    msg = parse(b'{"jsonrpc":"2.0","id":2,"method":"m","params":' + params + b"}")
    assert isinstance(msg, Invalid)
    assert msg.reply is not None and msg.reply.id == 2
    assert "params" in msg.reason


@pytest.mark.parametrize("bad_id", [b"true", b"false", b"1.5", b"null", b"[1]", b'{"a":1}'])
def test_bad_request_id_types(bad_id: bytes) -> None:
    msg = parse(b'{"jsonrpc":"2.0","id":' + bad_id + b',"method":"m"}')
    assert isinstance(msg, Invalid)
    assert msg.reply is not None
    assert msg.reply.id is None  # never echo an id that is not a string or an integer
    assert msg.reply.code == jsonrpc.INVALID_REQUEST


def test_bool_id_is_not_echoed_when_jsonrpc_missing() -> None:
    msg = parse(b'{"id":true,"method":"m"}')
    assert isinstance(msg, Invalid)
    assert msg.reply is not None and msg.reply.id is None


def test_object_that_is_nothing() -> None:
    msg = parse(b'{"jsonrpc":"2.0","id":9}')
    assert isinstance(msg, Invalid)
    assert msg.reply is not None and msg.reply.id == 9


def test_error_member_not_an_object() -> None:
    msg = parse(b'{"jsonrpc":"2.0","id":9,"error":"bad"}')
    assert isinstance(msg, Invalid)


@pytest.mark.parametrize("code", [b'"oops"', b"null", b"[1]"])
def test_error_response_with_non_numeric_code_does_not_raise(code: bytes) -> None:
    msg = parse(b'{"jsonrpc":"2.0","id":1,"error":{"code":' + code + b',"message":"m"}}')
    assert isinstance(msg, (ErrorResponse, Invalid))


def test_deeply_nested_json_is_invalid_not_an_exception() -> None:
    msg = parse(b"[" * 100_000 + b"]" * 100_000)
    assert isinstance(msg, Invalid)


# -- encoders -----------------------------------------------------------------------------------


def _one_line(data: bytes) -> object:
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    return json.loads(data)


def test_encode_request() -> None:
    data = jsonrpc.encode_request("e1", "invoke", {"text": "a\nb", "n": 1})
    assert _one_line(data) == {"jsonrpc": "2.0", "id": "e1", "method": "invoke",
                               "params": {"text": "a\nb", "n": 1}}


def test_encode_notification() -> None:
    data = jsonrpc.encode_notification("log", {"message": "line1\nline2\r\n"})
    assert _one_line(data) == {"jsonrpc": "2.0", "method": "log", "params": {"message": "line1\nline2\r\n"}}


def test_encode_response_object() -> None:
    data = jsonrpc.encode(jsonrpc.response_object(3, "multi\nline"))
    assert _one_line(data) == {"jsonrpc": "2.0", "id": 3, "result": "multi\nline"}


def test_error_object_without_data_omits_it() -> None:
    assert jsonrpc.error_object(1, -32601, "Method not found") == {
        "jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "Method not found"}}


def test_error_object_with_data() -> None:
    obj = jsonrpc.error_object(None, -32000, "bad\nthing", {"code": "x", "stacktrace": "a\nb"})
    data = jsonrpc.encode(obj)
    assert _one_line(data) == {"jsonrpc": "2.0", "id": None,
                               "error": {"code": -32000, "message": "bad\nthing",
                                         "data": {"code": "x", "stacktrace": "a\nb"}}}


def test_encode_batch_is_one_line() -> None:
    data = jsonrpc.encode([jsonrpc.response_object(1, "a\n"), jsonrpc.response_object(2, "b")])
    assert _one_line(data) == [{"jsonrpc": "2.0", "id": 1, "result": "a\n"},
                               {"jsonrpc": "2.0", "id": 2, "result": "b"}]


def test_encoding_is_utf8_not_ascii_escaped() -> None:
    data = jsonrpc.encode(jsonrpc.response_object(1, "é✓"))
    assert "é✓".encode() in data


def test_round_trip_request() -> None:
    line = jsonrpc.encode_request(12, "m", {"x": [1, "two\n"]})
    assert parse(line.rstrip(b"\n")) == Request(12, "m", {"x": [1, "two\n"]})
