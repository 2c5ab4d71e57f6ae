"""HTTP <-> function payloads: request bodies, function results as answers, error bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modules.api.exchange import (
    BadRequestBody,
    HttpAnswer,
    answer_from_result,
    error_answer,
    parse_body,
    request_payload,
)
from modules.api.routes import Route, normalise_pattern

# -- parse_body -------------------------------------------------------------------------------------


def test_empty_body_is_none() -> None:
    assert parse_body(b"", "application/json") is None
    assert parse_body(b"", "text/plain") is None


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "Application/JSON", "application/vnd.api+json"])
def test_json_body(ctype: str) -> None:
    assert parse_body(b'{"a": [1, "\xc3\xa9"]}', ctype) == {"a": [1, "é"]}


def test_json_scalar_body() -> None:
    assert parse_body(b"42", "application/json") == 42


@pytest.mark.parametrize("raw", [b"{bad", b"nul", b"\xff\xfe{", b'{"a":1}{"b":2}'])
def test_invalid_json_is_an_error_that_says_json(raw: bytes) -> None:
    with pytest.raises(BadRequestBody) as info:
        parse_body(raw, "application/json")
    assert "JSON" in str(info.value)


def test_text_body() -> None:
    assert parse_body("héllo\nworld".encode(), "text/plain") == "héllo\nworld"


def test_no_content_type_is_text_even_if_it_looks_like_json() -> None:
    assert parse_body(b'{"a":1}', "") == '{"a":1}'


def test_non_utf8_text_is_an_error() -> None:
    with pytest.raises(BadRequestBody) as info:
        parse_body(b"\xff\xfe\xfa", "text/plain")
    assert "UTF-8" in str(info.value)


# -- request_payload --------------------------------------------------------------------------------


def test_request_payload_shape() -> None:
    pattern, segments = normalise_pattern("/users/:id")
    r = Route("GET", pattern, "f", "t", None, segments)
    payload = request_payload(r, "GET", "/users/7", {"id": "7"}, {"q": "1"}, {"x-a": "b"}, {"k": 1})
    assert payload == {
        "path_params": {"id": "7"},
        "query_params": {"q": "1"},
        "headers": {"x-a": "b"},
        "method": "GET",
        "path": "/users/:id",
        "url": "/users/7",
        "body": {"k": 1},
        "trigger": {"type": "http", "path": "/users/:id", "method": "GET"},
    }


# -- answer_from_result -----------------------------------------------------------------------------


def body_json(answer: HttpAnswer) -> Any:
    return json.loads(answer.body)


def test_status_code_headers_and_json_body() -> None:
    a = answer_from_result({"status_code": 201, "headers": {"X-Id": 5}, "body": {"ok": True}})
    assert a.status == 201
    assert a.headers == {"X-Id": "5", "Content-Type": "application/json"}
    assert body_json(a) == {"ok": True}


def test_status_code_camel_case() -> None:
    a = answer_from_result({"statusCode": 404, "body": {"error": "nope"}})
    assert a.status == 404
    assert body_json(a) == {"error": "nope"}


def test_snake_case_wins_over_camel_case() -> None:
    assert answer_from_result({"status_code": 202, "statusCode": 500}).status == 202


def test_headers_as_list_of_strings() -> None:
    a = answer_from_result({"status_code": 200, "headers": ["X-A: 1", "X-B:two: parts", "bad", 5],
                            "body": "x"})
    assert a.headers["X-A"] == "1"
    assert a.headers["X-B"] == "two: parts"
    assert "bad" not in a.headers
    assert a.headers["Content-Type"] == "application/json"


def test_string_body_with_text_content_type_is_sent_raw() -> None:
    a = answer_from_result({"status_code": 200, "headers": {"content-type": "text/html"},
                            "body": "<p>hé</p>"})
    assert a.body == "<p>hé</p>".encode()
    assert a.headers == {"content-type": "text/html"}


def test_string_body_with_json_content_type_is_json_encoded() -> None:
    a = answer_from_result({"headers": {"Content-Type": "application/json"}, "body": "hi"})
    assert a.body == b'"hi"'


def test_string_body_without_content_type_is_json() -> None:
    a = answer_from_result({"body": "hi"})
    assert a.status == 200
    assert a.body == b'"hi"'
    assert a.headers == {"Content-Type": "application/json"}


def test_non_string_body_with_text_content_type_is_json_encoded() -> None:
    a = answer_from_result({"headers": {"Content-Type": "text/plain"}, "body": [1, 2]})
    assert body_json(a) == [1, 2]
    assert a.headers == {"Content-Type": "text/plain"}


@pytest.mark.parametrize("result", [{"user": "ann"}, {"status": 201}, {"body": 1, "extra": 2}, [1, 2], "text",
                                    7, True])
def test_non_response_value_is_json_body_200(result: Any) -> None:
    a = answer_from_result(result)
    assert a.status == 200
    assert a.headers == {"Content-Type": "application/json"}
    assert body_json(a) == result


def test_empty_dict_is_a_json_body() -> None:
    a = answer_from_result({})
    assert a.status == 200
    assert body_json(a) == {}


@pytest.mark.parametrize("result", [None, {"status_code": 200}, {"status_code": 200, "body": None}])
def test_none_body_becomes_empty_object(result: Any) -> None:
    a = answer_from_result(result)
    assert a.status == 200
    assert body_json(a) == {}


@pytest.mark.parametrize("status", [204, 304])
def test_no_content_statuses_have_empty_body(status: int) -> None:
    a = answer_from_result({"status_code": status})
    assert a.status == status
    assert a.body == b""


@pytest.mark.parametrize("status", [99, 600, "200", True, 200.0, None, -1])
def test_invalid_status_is_500(status: Any) -> None:
    a = answer_from_result({"status_code": status, "body": "x"})
    assert a.status == 500
    err = body_json(a)["error"]
    assert err["code"] == "invalid_response"
    assert repr(status) in err["message"]


def test_headers_of_odd_type_are_ignored() -> None:
    a = answer_from_result({"status_code": 200, "headers": "X-A: 1", "body": {}})
    assert a.headers == {"Content-Type": "application/json"}


# -- error_answer -----------------------------------------------------------------------------------


def test_error_answer_shape() -> None:
    a = error_answer(503, "overloaded", "busy")
    assert a.status == 503
    assert a.headers == {"Content-Type": "application/json"}
    assert body_json(a) == {"error": {"code": "overloaded", "message": "busy"}}


def test_error_answer_extra_fields() -> None:
    a = error_answer(500, "invocation_failed", "boom", error_id="abc123")
    assert body_json(a) == {"error": {"code": "invocation_failed", "message": "boom", "error_id": "abc123"}}


def test_error_answers_have_independent_headers() -> None:
    a = error_answer(503, "x", "y")
    a.headers["Retry-After"] = "1"
    assert "Retry-After" not in error_answer(503, "x", "y").headers


def test_json_nested_deeper_than_the_parser_goes_is_a_bad_body_not_a_crash() -> None:
    with pytest.raises(BadRequestBody, match="nested too deeply"):
        parse_body(b"[" * 100_000 + b"]" * 100_000, "application/json")
