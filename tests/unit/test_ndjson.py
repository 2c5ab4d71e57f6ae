"""LineSplitter: NDJSON framing, sans-IO, with a size cap."""

from __future__ import annotations

import pytest

from rpc.ndjson import DEFAULT_MAX_FRAME, LineSplitter, Oversized


def feed_all(splitter: LineSplitter, chunks: list[bytes]) -> list[bytes | Oversized]:
    out: list[bytes | Oversized] = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    return out


def test_default_limit() -> None:
    assert LineSplitter().max_bytes == DEFAULT_MAX_FRAME


def test_one_complete_line() -> None:
    assert LineSplitter().feed(b"hello\n") == [b"hello"]


def test_incomplete_line_waits_for_newline() -> None:
    s = LineSplitter()
    assert s.feed(b"hel") == []
    assert s.feed(b"lo") == []
    assert s.feed(b"\n") == [b"hello"]


def test_line_split_across_chunks_then_more_lines() -> None:
    s = LineSplitter()
    assert s.feed(b'{"a":') == []
    assert s.feed(b'1}\n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert s.feed(b":3}\n") == [b'{"c":3}']


def test_many_lines_in_one_chunk() -> None:
    lines = [f"line {i}".encode() for i in range(100)]
    assert LineSplitter().feed(b"\n".join(lines) + b"\n") == lines


def test_byte_by_byte() -> None:
    data = b"ab\ncd\n\nef\n"
    assert feed_all(LineSplitter(), [bytes([b]) for b in data]) == [b"ab", b"cd", b"ef"]


def test_empty_lines_are_skipped_fast_and_buffered_paths() -> None:
    s = LineSplitter()
    assert s.feed(b"\n\na\n\n\nb\n\n") == [b"a", b"b"]
    assert s.feed(b"par") == []
    assert s.feed(b"t\n\n\nx\n") == [b"part", b"x"]


def test_empty_chunk_is_harmless() -> None:
    s = LineSplitter()
    assert s.feed(b"") == []
    s.feed(b"ab")
    assert s.feed(b"") == []
    assert s.feed(b"\n") == [b"ab"]


def test_carriage_return_is_kept_in_the_line() -> None:
    assert LineSplitter().feed(b"a\r\n") == [b"a\r"]


def test_line_at_exact_limit_is_accepted_both_paths() -> None:
    s = LineSplitter(max_bytes=5)
    assert s.feed(b"12345\n") == [b"12345"]
    assert s.feed(b"123") == []
    assert s.feed(b"45\n") == [b"12345"]
    assert s.feed(b"12345") == []  # pending tail exactly at the limit is kept
    assert s.feed(b"\n") == [b"12345"]


def test_oversized_complete_line_fast_path_then_next_lines_work() -> None:
    s = LineSplitter(max_bytes=5)
    assert s.feed(b"ok\n123456789\nfine\n") == [b"ok", Oversized(9), b"fine"]
    assert s.feed(b"again\n") == [b"again"]


def test_oversized_complete_line_buffered_path() -> None:
    s = LineSplitter(max_bytes=5)
    assert s.feed(b"ab") == []
    assert s.feed(b"cdefgh\nnext\n") == [Oversized(8), b"next"]
    assert s.feed(b"x\n") == [b"x"]


def test_oversized_tail_in_fast_path_is_skipped_until_newline() -> None:
    s = LineSplitter(max_bytes=5)
    assert s.feed(b"a\n1234567") == [b"a"]  # tail > limit: skipping starts, nothing buffered
    assert s.feed(b"89") == []
    assert s.feed(b"0\nb\n") == [Oversized(10), b"b"]
    assert s.flush() == b""


def test_oversized_spread_over_many_chunks_buffered_path() -> None:
    s = LineSplitter(max_bytes=8)
    assert s.feed(b"abc") == []  # buffered
    assert s.feed(b"defgh") == []  # 8 bytes: still fine
    assert s.feed(b"ij") == []  # 10 > 8: skipping starts, buffer dropped
    assert s.feed(b"k" * 100) == []
    assert s.feed(b"kk") == []
    assert s.feed(b"lm\nafter\npart") == [Oversized(10 + 100 + 2 + 2), b"after"]
    assert s.feed(b"ial\n") == [b"partial"]


def test_oversized_reported_once_per_line() -> None:
    s = LineSplitter(max_bytes=4)
    out = feed_all(s, [b"x" * 10, b"y" * 10, b"z" * 10, b"\n", b"ok\n"])
    assert out == [Oversized(30), b"ok"]


def test_newline_at_start_of_chunk_ends_skip() -> None:
    s = LineSplitter(max_bytes=3)
    assert s.feed(b"abcdef") == []
    assert s.feed(b"\nxy\n") == [Oversized(6), b"xy"]


def test_skip_ends_and_tail_is_buffered() -> None:
    s = LineSplitter(max_bytes=3)
    s.feed(b"abcdef")
    assert s.feed(b"g\nxy") == [Oversized(7)]
    assert s.flush() == b"xy"


def test_two_oversized_lines_in_a_row() -> None:
    s = LineSplitter(max_bytes=2)
    assert s.feed(b"aaaa\nbbbbb\ncc\n") == [Oversized(4), Oversized(5), b"cc"]


def test_flush_returns_unterminated_tail_and_resets() -> None:
    s = LineSplitter()
    assert s.feed(b"done\nhalf") == [b"done"]
    assert s.flush() == b"half"
    assert s.flush() == b""
    assert s.feed(b"new\n") == [b"new"]


def test_flush_while_skipping_drops_the_oversized_rest() -> None:
    s = LineSplitter(max_bytes=2)
    s.feed(b"toolong")
    assert s.flush() == b""
    assert s.feed(b"ok\n") == [b"ok"]  # not treated as the end of the dropped line


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 64])
def test_chunking_does_not_change_the_result(chunk_size: int) -> None:
    data = b"alpha\n\nbeta-is-longer\ngamma\n" + b"z" * 20 + b"\nomega\ntail"
    s = LineSplitter(max_bytes=12)
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
    out = feed_all(s, chunks)
    assert out == [b"alpha", Oversized(14), b"gamma", Oversized(20), b"omega"]
    assert s.flush() == b"tail"
