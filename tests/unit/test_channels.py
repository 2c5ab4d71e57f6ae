"""supervisor.core.channels: ordering, ends taken once, close, backpressure, expiry, keys."""

from __future__ import annotations

import asyncio

import pytest

from supervisor.core.channels import (
    DEFAULT_BUFFER,
    MAX_BUFFER,
    Channel,
    ChannelClosed,
    ChannelEndTaken,
    ChannelError,
    ChannelNotFound,
    ChannelRegistry,
)
from supervisor.errors import EngineError


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 5))


async def drain(channel: Channel) -> list[str | bytes]:
    items: list[str | bytes] = []
    while (item := await channel.get()) is not None:
        items.append(item)
    return items


def test_items_arrive_in_order_text_and_bytes_mixed_then_end() -> None:
    async def main() -> None:
        reg = ChannelRegistry()
        ch = reg.create()
        reader = asyncio.ensure_future(drain(ch))
        for item in ["hello", b"\x00\x01", "world", b"\xff" * 70_000]:
            await ch.put(item)
        ch.close()
        assert await reader == ["hello", b"\x00\x01", "world", b"\xff" * 70_000]
        assert len(reg) == 0  # the reader saw the end: nothing left to find

    run(main())


def test_refs_share_id_and_key_and_name_their_direction() -> None:
    reg = ChannelRegistry()
    ch = reg.create()
    w, r = ch.ref("write"), ch.ref("read")
    assert w["channel_id"] == r["channel_id"] == ch.id and w["access_key"] == r["access_key"] == ch.key
    assert (w["direction"], r["direction"]) == ("write", "read")
    other = reg.create()
    assert other.id != ch.id and other.key != ch.key and len(ch.key) >= 32


def test_each_end_is_taken_once() -> None:
    reg = ChannelRegistry()
    ch = reg.create()
    assert reg.open(ch.id, ch.key, "write") is ch
    with pytest.raises(ChannelEndTaken):
        reg.open(ch.id, ch.key, "write")
    assert reg.open(ch.id, ch.key, "read") is ch
    with pytest.raises(ChannelEndTaken):
        reg.open(ch.id, ch.key, "read")


def test_unknown_id_and_wrong_key_are_the_same_error() -> None:
    reg = ChannelRegistry()
    ch = reg.create()
    with pytest.raises(ChannelNotFound):
        reg.open("nope", ch.key, "read")
    with pytest.raises(ChannelNotFound):
        reg.open(ch.id, ch.key[:-1] + ("0" if ch.key[-1] != "0" else "1"), "read")
    with pytest.raises(ChannelNotFound):
        reg.open(ch.id, "é-not-ascii", "read")
    assert not ch.reader_taken  # a failed attempt takes nothing
    assert issubclass(ChannelNotFound, ChannelError) and issubclass(ChannelError, EngineError)


def test_attach_is_announced_to_the_owner() -> None:
    reg = ChannelRegistry()
    ch = reg.create()
    seen: list[str] = []
    ch.on_attach = seen.append
    reg.open(ch.id, ch.key, "write")
    assert seen == ["write"]


def test_writer_waits_while_the_buffer_is_full() -> None:
    async def main() -> None:
        ch = ChannelRegistry().create(buffer_size=2)
        await ch.put(b"1")
        await ch.put(b"2")
        third = asyncio.ensure_future(ch.put(b"3"))
        await asyncio.sleep(0)  # let it run until it blocks
        assert not third.done() and len(ch) == 2  # bounded: the third item is not queued
        assert await ch.get() == b"1"
        await asyncio.wait_for(third, 1)  # room again: the writer proceeds
        assert len(ch) == 2
        ch.close()
        assert await drain(ch) == [b"2", b"3"]

    run(main())


def test_buffer_size_default_and_cap() -> None:
    reg = ChannelRegistry()
    assert reg.create().capacity == DEFAULT_BUFFER == 64
    assert reg.create(buffer_size=5000).capacity == MAX_BUFFER == 1024
    assert reg.create(buffer_size=7).capacity == 7


def test_reader_leaving_fails_a_waiting_writer_and_later_writes() -> None:
    async def main() -> None:
        reg = ChannelRegistry()
        ch = reg.create(buffer_size=1)
        finished: list[bool] = []
        ch.on_finish = lambda: finished.append(True)
        await ch.put(b"1")
        blocked = asyncio.ensure_future(ch.put(b"2"))
        await asyncio.sleep(0)
        ch.abandon()
        with pytest.raises(ChannelClosed):
            await blocked
        with pytest.raises(ChannelClosed):
            await ch.put(b"3")
        assert finished == [True] and len(reg) == 0 and len(ch) == 0  # queued items were discarded

    run(main())


def test_write_after_close_fails() -> None:
    async def main() -> None:
        ch = ChannelRegistry().create()
        ch.close()
        with pytest.raises(ChannelClosed):
            await ch.put("late")

    run(main())


def test_a_broken_writer_is_visible_to_the_reader_after_the_queued_items() -> None:
    async def main() -> None:
        ch = ChannelRegistry().create()
        await ch.put(b"part")
        ch.close("the writer disconnected")
        assert await ch.get() == b"part"
        with pytest.raises(ChannelClosed, match="disconnected"):
            await ch.get()

    run(main())


def test_a_waiting_reader_wakes_on_close_and_on_drop() -> None:
    async def main() -> None:
        reg = ChannelRegistry()
        ch = reg.create()
        waiting = asyncio.ensure_future(ch.get())
        await asyncio.sleep(0)
        ch.close()
        assert await waiting is None
        ch2 = reg.create()
        waiting = asyncio.ensure_future(ch2.get())
        await asyncio.sleep(0)
        reg.drop(ch2, "request over")
        with pytest.raises(ChannelClosed, match="request over"):
            await waiting
        assert len(reg) == 0

    run(main())


def test_content_channel_is_complete_and_its_write_end_taken() -> None:
    async def main() -> None:
        reg = ChannelRegistry()
        ch = reg.create(content=b"raw body", expires=False)
        with pytest.raises(ChannelEndTaken):
            reg.open(ch.id, ch.key, "write")
        assert await drain(ch) == [b"raw body"]
        empty = reg.create(content=b"", expires=False)
        assert await empty.get() is None

    run(main())


def test_channels_nobody_connected_to_expire() -> None:
    async def main() -> None:
        reg = ChannelRegistry(ttl=0.05)
        lonely = reg.create()
        half = reg.create()
        reg.open(half.id, half.key, "read")
        reader = asyncio.ensure_future(half.get())
        both = reg.create()
        reg.open(both.id, both.key, "write")
        reg.open(both.id, both.key, "read")
        owned = reg.create(expires=False)
        with pytest.raises(ChannelClosed, match="expired"):
            await asyncio.wait_for(reader, 2)  # woken by the registry's one timer, not a poll
        assert reg.get(lonely.id) is None and reg.get(half.id) is None
        assert reg.get(both.id) is both and reg.get(owned.id) is owned  # attached or owned: kept
        with pytest.raises(ChannelNotFound):
            reg.open(lonely.id, lonely.key, "write")

    run(main())


def test_expiry_without_a_loop_happens_on_the_next_create() -> None:
    reg = ChannelRegistry(ttl=-1.0)  # already expired when made
    first = reg.create()
    reg.create()
    assert reg.get(first.id) is None


def test_close_drops_everything() -> None:
    async def main() -> None:
        reg = ChannelRegistry()
        chans = [reg.create() for _ in range(3)]
        reg.close()
        assert len(reg) == 0
        for ch in chans:
            with pytest.raises(ChannelClosed):
                await ch.put(b"x")

    run(main())
