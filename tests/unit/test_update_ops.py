"""state::update / stream::update ops: shapes and error codes of the published SDKs."""

from __future__ import annotations

import pytest

from modules.state.update_ops import apply_ops


def ok(old, *ops):
    outcome = apply_ops(old, list(ops))
    assert outcome.errors == []
    return outcome.new_value


def test_set_root_and_first_level_key_with_literal_dots():
    assert ok(None, {"type": "set", "path": "", "value": 5}) == 5
    assert ok({"a": 1}, {"type": "set", "path": "a.b", "value": 2}) == {"a": 1, "a.b": 2}
    assert ok(None, {"type": "set", "path": ["x", "y"], "value": 1}) == {"x": {"y": 1}}


def test_increment_decrement_missing_existing_and_floats():
    assert ok(None, {"type": "increment", "path": "n", "by": 3}) == {"n": 3}
    assert ok({"n": 3}, {"type": "decrement", "path": "n", "by": 5}) == {"n": -2}
    assert ok({"n": 1.5}, {"type": "increment", "path": "n", "by": 1}) == {"n": 2.5}
    assert ok({"a": {"b": 1}}, {"type": "increment", "path": ["a", "b"], "by": 1}) == {"a": {"b": 2}}


def test_merge_root_and_nested_creates_intermediates():
    assert ok({"a": 1}, {"type": "merge", "value": {"b": 2}}) == {"a": 1, "b": 2}
    assert ok({"a": 5}, {"type": "merge", "path": ["a", "b"], "value": {"c": 1}}) == {"a": {"b": {"c": 1}}}


def test_append_array_string_and_nested():
    assert ok({"l": [1]}, {"type": "append", "path": "l", "value": 2}) == {"l": [1, 2]}
    assert ok({"s": "ab"}, {"type": "append", "path": "s", "value": "c"}) == {"s": "abc"}
    assert ok(None, {"type": "append", "path": "s", "value": "x"}) == {"s": "x"}
    assert ok(None, {"type": "append", "path": ["a", "b"], "value": "x"}) == {"a": {"b": ["x"]}}
    assert ok([1], {"type": "append", "value": 2}) == [1, 2]


def test_remove_and_order_of_ops():
    assert ok({"a": 1, "b": 2}, {"type": "remove", "path": "a"}, {"type": "set", "path": "c", "value": 3}) == {
        "b": 2, "c": 3}
    assert ok({"a": 1}, {"type": "remove", "path": ["x", "y"]}) == {"a": 1}


@pytest.mark.parametrize(("old", "op", "code"), [
    ({"n": "x"}, {"type": "increment", "path": "n", "by": 1}, "increment.not_number"),
    ({"n": 1}, {"type": "increment", "path": "n", "by": "1"}, "increment.by_not_number"),
    ([1], {"type": "set", "path": "a", "value": 1}, "set.target_not_object"),
    ({"a": {}}, {"type": "append", "path": "a", "value": 1}, "append.type_mismatch"),
    ({"s": "a"}, {"type": "append", "path": "s", "value": 1}, "append.type_mismatch"),
    ({}, {"type": "merge", "value": [1]}, "merge.value_not_object"),
    ({}, {"type": "merge", "value": {"__proto__": 1}}, "merge.value.forbidden_key"),
    ({}, {"type": "merge", "path": ["a"] * 33, "value": {}}, "merge.path.too_deep"),
    ({}, {"type": "set", "path": "x" * 300, "value": 1}, "set.path.segment_too_long"),
    ({}, {"type": "set", "path": ["constructor"], "value": 1}, "set.path.forbidden_segment"),
    ({}, {"type": "explode"}, "op.unknown_type"),
    ({}, {"type": "remove"}, "remove.path.required"),
    ({}, "nope", "op.invalid"),
])
def test_bad_ops_are_reported_with_index_and_others_still_apply(old, op, code):
    outcome = apply_ops(old, [{"type": "set", "path": "first", "value": 1} if isinstance(old, dict) else
                              {"type": "append", "value": 0}, op])
    assert [(e["op_index"], e["code"]) for e in outcome.errors] == [(1, code)]
    assert outcome.errors[0]["message"]
    if isinstance(old, dict):
        assert outcome.new_value["first"] == 1


def test_the_old_value_is_never_mutated():
    old = {"a": {"b": [1]}}
    apply_ops(old, [{"type": "append", "path": ["a", "b"], "value": 2}, {"type": "set", "path": "c", "value": 1}])
    assert old == {"a": {"b": [1]}}
