"""RouteTable / normalise_pattern: matching, precedence, decoding, replacement and conflicts."""

from __future__ import annotations

import pytest

from modules.api.routes import Route, RouteTable, normalise_pattern
from supervisor.errors import TriggerConfigError


def route(method: str, api_path: str, function_id: str = "f", trigger_id: str | None = None) -> Route:
    pattern, segments = normalise_pattern(api_path)
    return Route(method, pattern, function_id, trigger_id or f"{method} {pattern}", None, segments)


def table(*routes: Route) -> RouteTable:
    t = RouteTable()
    for r in routes:
        assert t.add(r) is None
    return t


def fid(t: RouteTable, method: str, path: str) -> tuple[str, dict[str, str]] | None:
    found = t.match(method, path)
    return None if found is None else (found[0].function_id, found[1])


# -- normalise_pattern ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "pattern", "segments"), [
    ("/users/:id", "/users/:id", ("users", ":id")),
    ("users/:id/", "/users/:id", ("users", ":id")),
    ("  /a/b  ", "/a/b", ("a", "b")),
    ("/", "/", ()),
    ("", "/", ()),
    ("/:user_id/x/:Name2", "/:user_id/x/:Name2", (":user_id", "x", ":Name2")),
])
def test_normalise(raw: str, pattern: str, segments: tuple[str, ...]) -> None:
    assert normalise_pattern(raw) == (pattern, segments)


@pytest.mark.parametrize("raw", ["/users/:", "/a/:b-c", "/a/:b.c", "/:a b", "/:x/:y:z"])
def test_bad_param_names(raw: str) -> None:
    with pytest.raises(TriggerConfigError, match="parameter"):
        normalise_pattern(raw)


def test_duplicate_param_name() -> None:
    with pytest.raises(TriggerConfigError, match="twice"):
        normalise_pattern("/a/:id/b/:id")


def test_trigger_config_error_code() -> None:
    with pytest.raises(TriggerConfigError) as info:
        normalise_pattern("/:")
    assert info.value.code == "invalid_trigger_config"


def test_route_params_and_shape() -> None:
    r = route("GET", "/orgs/:org/repos/:repo")
    assert r.params == ("org", "repo")
    assert r.shape == ("orgs", ":", "repos", ":")


# -- matching ---------------------------------------------------------------------------------------


def test_static_route() -> None:
    t = table(route("GET", "/health", "health"))
    assert fid(t, "GET", "/health") == ("health", {})
    assert t.match("POST", "/health") is None
    assert t.match("GET", "/healthz") is None
    assert t.match("GET", "/health/x") is None


def test_root_route() -> None:
    t = table(route("GET", "/", "root"))
    assert fid(t, "GET", "/") == ("root", {})
    assert fid(t, "GET", "") == ("root", {})
    assert t.match("GET", "/x") is None


def test_param_route() -> None:
    t = table(route("GET", "/users/:id", "user"))
    assert fid(t, "GET", "/users/42") == ("user", {"id": "42"})
    assert t.match("GET", "/users") is None
    assert t.match("GET", "/users/42/posts") is None


def test_multiple_params() -> None:
    t = table(route("GET", "/orgs/:org/repos/:repo", "repo"))
    assert fid(t, "GET", "/orgs/iii/repos/engine") == ("repo", {"org": "iii", "repo": "engine"})


def test_trailing_slash_ignored() -> None:
    t = table(route("GET", "/users/:id", "user"), route("GET", "/health/", "health"))
    assert fid(t, "GET", "/users/7/") == ("user", {"id": "7"})
    assert fid(t, "GET", "/health/") == ("health", {})
    assert fid(t, "GET", "/health") == ("health", {})


def test_static_beats_param_regardless_of_order() -> None:
    for order in (0, 1):
        rs = [route("GET", "/users/:id", "by_id"), route("GET", "/users/me", "me")]
        t = table(*(rs if order == 0 else rs[::-1]))
        assert fid(t, "GET", "/users/me") == ("me", {})
        assert fid(t, "GET", "/users/you") == ("by_id", {"id": "you"})


def test_static_segment_beats_param_at_same_position() -> None:
    t = table(
        route("GET", "/:a/:b", "pp"),
        route("GET", "/:a/edit", "pe"),
        route("GET", "/x/:b", "xp"),
    )
    assert fid(t, "GET", "/x/edit") == ("xp", {"b": "edit"})  # the earlier static segment wins
    assert fid(t, "GET", "/y/edit") == ("pe", {"a": "y"})
    assert fid(t, "GET", "/y/z") == ("pp", {"a": "y", "b": "z"})


def test_methods_are_separate() -> None:
    t = table(route("GET", "/items/:id", "get"), route("DELETE", "/items/:id", "delete"))
    assert fid(t, "GET", "/items/1") == ("get", {"id": "1"})
    assert fid(t, "DELETE", "/items/1") == ("delete", {"id": "1"})
    assert t.match("PUT", "/items/1") is None


def test_percent_decoding_of_params() -> None:
    t = table(route("GET", "/files/:name", "file"))
    assert fid(t, "GET", "/files/hello%20world") == ("file", {"name": "hello world"})
    assert fid(t, "GET", "/files/a%2Fb") == ("file", {"name": "a/b"})  # %2F stays inside the param
    assert fid(t, "GET", "/files/caf%C3%A9") == ("file", {"name": "café"})


def test_percent_encoded_static_segment_in_param_route() -> None:
    t = table(route("GET", "/a b/:x", "sp"))
    assert fid(t, "GET", "/a%20b/1") == ("sp", {"x": "1"})


def test_percent_encoded_static_route() -> None:
    t = table(route("GET", "/hello world", "hw"))
    assert fid(t, "GET", "/hello%20world") == ("hw", {})


def test_encoded_slash_does_not_match_a_static_two_segment_route() -> None:
    t = table(route("GET", "/a/b", "ab"))
    assert t.match("GET", "/a%2Fb") is None


def test_encoded_slash_does_not_split_param_segments() -> None:
    t = table(route("GET", "/:x/:y", "two"))
    assert t.match("GET", "/a%2Fb") is None


# -- add / replace / conflicts / remove -------------------------------------------------------------


def test_replace_same_method_and_pattern_returns_old_static() -> None:
    t = RouteTable()
    old = route("GET", "/x", "f1", "t1")
    new = route("GET", "/x/", "f2", "t2")
    assert t.add(old) is None
    assert t.add(new) is old
    assert fid(t, "GET", "/x") == ("f2", {})
    assert len(t) == 1
    assert t.remove("t1") is None  # the replaced route's trigger no longer owns anything
    assert fid(t, "GET", "/x") == ("f2", {})


def test_replace_same_method_and_pattern_returns_old_param() -> None:
    t = RouteTable()
    old = route("GET", "/u/:id", "f1", "t1")
    new = route("GET", "/u/:id", "f2", "t2")
    t.add(old)
    assert t.add(new) is old
    assert fid(t, "GET", "/u/1") == ("f2", {"id": "1"})
    assert len(t) == 1
    assert t.remove("t2") is new
    assert t.match("GET", "/u/1") is None
    assert len(t) == 0


def test_same_trigger_re_added_replaces_itself() -> None:
    t = RouteTable()
    r = route("POST", "/a/:b", "f", "t")
    t.add(r)
    assert t.add(route("POST", "/a/:b", "f", "t")) == r
    assert len(t) == 1


def test_conflicting_shape_with_different_param_names() -> None:
    t = table(route("GET", "/users/:id", "a", "t1"))
    with pytest.raises(TriggerConfigError) as info:
        t.add(route("GET", "/users/:name", "b", "t2"))
    msg = str(info.value)
    assert "/users/:name" in msg and "/users/:id" in msg and "'a'" in msg
    assert fid(t, "GET", "/users/1") == ("a", {"id": "1"})  # unchanged
    assert len(t) == 1


def test_same_shape_other_method_is_not_a_conflict() -> None:
    t = table(route("GET", "/users/:id", "a"), route("PUT", "/users/:name", "b"))
    assert fid(t, "PUT", "/users/1") == ("b", {"name": "1"})


def test_remove_by_trigger_id() -> None:
    t = table(route("GET", "/s", "s", "ts"), route("GET", "/p/:x", "p", "tp"))
    assert len(t) == 2
    removed = t.remove("ts")
    assert removed is not None and removed.function_id == "s"
    assert t.match("GET", "/s") is None
    removed = t.remove("tp")
    assert removed is not None and removed.function_id == "p"
    assert t.match("GET", "/p/1") is None
    assert len(t) == 0
    assert t.remove("ts") is None
    assert t.remove("unknown") is None


def test_after_remove_a_conflicting_shape_can_be_added() -> None:
    t = table(route("GET", "/users/:id", "a", "t1"))
    t.remove("t1")
    assert t.add(route("GET", "/users/:name", "b", "t2")) is None
    assert fid(t, "GET", "/users/x") == ("b", {"name": "x"})


def test_allowed_methods() -> None:
    t = table(
        route("GET", "/items/:id", "g"),
        route("DELETE", "/items/:id", "d"),
        route("POST", "/items", "p"),
    )
    assert t.allowed_methods("/items/3") == ["DELETE", "GET"]
    assert t.allowed_methods("/items") == ["POST"]
    assert t.allowed_methods("/nothing") == []
