"""The engine's JSON codec reads and writes what the standard library does (orjson underneath)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import random

import pytest

from supervisor.core.jsoncodec import dumps, dumps_str, loads


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randrange(-10**6, 10**6)
    if kind == 2:  # integers around and beyond 64 bits
        return rng.choice([1, -1]) * rng.randrange(2**62, 2**70)
    if kind == 3:
        return rng.uniform(-1e20, 1e20)
    if kind == 4:
        return "".join(rng.choice("ab\"\\\n\té€😀0123456789") for _ in range(rng.randrange(30)))
    if kind == 5:
        return str(rng.randrange(10**25))  # long digit runs inside strings
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {f"k{rng.randrange(100)}": _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def test_round_trips_match_the_standard_library_on_random_values() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        value = _random_value(rng)
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        assert loads(dumps(value)) == value
        assert loads(text) == json.loads(text)
        assert loads(text.encode()) == json.loads(text)
        assert json.loads(dumps_str(value)) == value


@pytest.mark.parametrize("text", [
    "123456789012345678901234567890",  # beyond 64 bits: orjson would read a float
    "-9223372036854775809",
    "18446744073709551616",
    '{"id": 123456789012345678901}',
    "NaN", "-Infinity", "1e400",  # literals only json reads
    '"\\ud800"',  # a lone surrogate escape
])
def test_what_orjson_reads_differently_is_read_by_json(text: str) -> None:
    expected = json.loads(text)
    got = loads(text)
    assert type(got) is type(expected)
    assert got == expected or (isinstance(got, float) and math.isnan(got) and math.isnan(expected))


def test_text_with_a_lone_surrogate_is_read_by_json() -> None:
    assert loads('["\ud800"]') == ["\ud800"]
    with pytest.raises(ValueError, match="nested too deeply"):
        loads("[" * 100_000 + '"\ud800"' + "]" * 100_000)


def test_invalid_json_raises_the_standard_error() -> None:
    for bad in [b"", b"{", b"[1,]", b"\xff\xfe{", "{'a': 1}", b"[" * 100_000 + b"]" * 100_000]:
        with pytest.raises(ValueError):
            loads(bad)


def test_what_orjson_refuses_to_write_is_written_by_json() -> None:
    value = {"big": 2**70, 1: "int key", "neg": -(2**65)}
    assert json.loads(dumps(value)) == json.loads(json.dumps(value))
    assert dumps({"a": (1, 2)}) == b'{"a":[1,2]}'
    assert dumps("é") == '"é"'.encode()  # UTF-8, not \\u escapes


@pytest.mark.parametrize("value", [
    object(), {"when": datetime.datetime(2026, 1, 1)}, {"set": {1}},
])
def test_unserializable_values_raise_type_error_as_json_does(value: object) -> None:
    with pytest.raises(TypeError):
        dumps(value)


def test_dataclasses_are_not_serialized_silently() -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    with pytest.raises(TypeError):
        dumps(Point(1))


def test_nan_is_written_as_null() -> None:
    assert dumps([float("nan"), float("inf")]) == b"[null,null]"
