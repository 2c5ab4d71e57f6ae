"""CorsPolicy: allowed origins, response headers and preflight answers."""

from __future__ import annotations

from modules.api.config import METHODS, CorsConfig
from modules.api.cors import CorsPolicy


def test_no_config_allows_any_origin() -> None:
    p = CorsPolicy(None)
    assert p.any_origin
    assert p.allows("http://anything.example")
    assert p.response_headers("http://a.example") == {"Access-Control-Allow-Origin": "*"}
    assert p.methods == list(METHODS)


def test_star_in_list_is_any_origin() -> None:
    p = CorsPolicy(CorsConfig(["http://a.example", "*"]))
    assert p.any_origin
    assert p.allows("http://other.example")


def test_empty_origin_list_is_any_origin() -> None:
    assert CorsPolicy(CorsConfig([])).allows("http://x")


def test_no_origin_header_gets_no_cors_headers() -> None:
    assert CorsPolicy(None).response_headers(None) == {}
    assert CorsPolicy(None).response_headers("") == {}


def test_listed_origins() -> None:
    p = CorsPolicy(CorsConfig(["http://a.example", "https://b.example/"]))
    assert not p.any_origin
    assert p.allows("http://a.example")
    assert p.allows("http://a.example/")  # trailing slash ignored both ways
    assert p.allows("https://b.example")
    assert not p.allows("http://c.example")
    assert not p.allows("https://a.example")  # scheme matters


def test_listed_origin_is_echoed_with_vary() -> None:
    p = CorsPolicy(CorsConfig(["http://a.example"]))
    assert p.response_headers("http://a.example") == {
        "Access-Control-Allow-Origin": "http://a.example", "Vary": "Origin"}
    assert p.response_headers("http://evil.example") == {}


def test_preflight_allowed_with_headers_echoed() -> None:
    p = CorsPolicy(CorsConfig(["http://a.example"], ["GET", "POST"]))
    headers = p.preflight("http://a.example", "post", "Content-Type, X-Token")
    assert headers == {
        "Access-Control-Allow-Origin": "http://a.example",
        "Vary": "Origin",
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "Content-Type, X-Token",
        "Access-Control-Max-Age": "600",
    }


def test_preflight_without_requested_headers() -> None:
    headers = CorsPolicy(None).preflight("http://x", "DELETE", None)
    assert headers is not None
    assert "Access-Control-Allow-Headers" not in headers
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == ", ".join(METHODS)


def test_preflight_denied_method() -> None:
    p = CorsPolicy(CorsConfig(["*"], ["get"]))
    assert p.methods == ["GET"]
    assert p.preflight("http://x", "DELETE", None) is None
    assert p.preflight("http://x", "GET", None) is not None


def test_preflight_denied_origin() -> None:
    p = CorsPolicy(CorsConfig(["http://a.example"]))
    assert p.preflight("http://b.example", "GET", "X-A") is None


def test_star_method_allows_all() -> None:
    p = CorsPolicy(CorsConfig(["*"], ["*"]))
    assert p.methods == list(METHODS)
    assert p.preflight("http://x", "PATCH", None) is not None


def test_empty_method_list_allows_all() -> None:
    p = CorsPolicy(CorsConfig(["*"], []))
    assert p.methods == list(METHODS)
