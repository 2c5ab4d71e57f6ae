"""The per-client outbox: order, bounds, the drop of a client that falls behind, and nobody waiting on it."""

from __future__ import annotations

import asyncio

from modules.stream.outbox import ClientOutbox
from rpc.ws_frames import text_frame


def test_messages_are_sent_in_order_by_one_task() -> None:
    async def main() -> None:
        dropped: list[str] = []
        box = ClientOutbox(10, 1000, dropped.append)
        sent: list[bytes] = []
        done = asyncio.Event()

        async def send(data: bytes) -> None:
            sent.append(data)
            if len(sent) == 5:
                done.set()

        runner = asyncio.ensure_future(box.run(send))
        for i in range(3):
            assert box.put(b"m%d" % i)
        await asyncio.sleep(0)  # the runner takes the first batch
        assert box.put(b"m3") and box.put(b"m4")
        await asyncio.wait_for(done.wait(), 5)
        assert sent == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        assert len(box) == 0 and box.pending_bytes == 0 and box.sent == 5 and not dropped
        box.close()
        await asyncio.wait_for(runner, 5)

    asyncio.run(main())


def test_a_client_that_falls_behind_is_dropped_once_with_a_reason() -> None:
    async def main() -> None:
        dropped: list[str] = []
        box = ClientOutbox(3, 10_000, dropped.append)
        gate = asyncio.Event()

        async def stuck(data: bytes) -> None:  # the socket does not drain
            await gate.wait()

        runner = asyncio.ensure_future(box.run(stuck))
        assert box.put(b"first")
        await asyncio.sleep(0)  # "first" is now inside the stuck send
        assert all(box.put(b"x") for _ in range(3))  # the bound: 3 waiting
        assert not box.put(b"one too many")
        assert box.closed and len(box) == 0
        assert dropped == ["client too slow: 3 messages (3 bytes) waiting, limit 3 messages / 10000 bytes"]
        assert not box.put(b"later")  # closed: refused, no second drop
        assert len(dropped) == 1
        gate.set()
        await asyncio.wait_for(runner, 5)

    asyncio.run(main())


def test_byte_bound_and_one_large_message_for_an_idle_client() -> None:
    dropped: list[str] = []

    async def main() -> None:
        box = ClientOutbox(100, 10, dropped.append)
        assert box.put(b"x" * 50)  # larger than the bound, but nothing else waits: it goes
        assert not box.put(b"y")  # now it is behind by more than 10 bytes
        assert "1 messages (50 bytes)" in dropped[0]

    asyncio.run(main())


def test_drop_is_idempotent() -> None:
    async def main() -> None:
        dropped: list[str] = []
        box = ClientOutbox(1, 1, dropped.append)
        box.drop("first reason")
        box.drop("second reason")
        assert dropped == ["first reason"] and box.overflow_reason == "first reason"

    asyncio.run(main())


def test_text_frame_headers() -> None:
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert text_frame(b"x" * 70_000)[:10] == b"\x81\x7f" + (70_000).to_bytes(8, "big")


def test_fast_path_writes_directly_only_when_nothing_is_queued() -> None:
    async def main() -> None:
        written: list[bytes] = []
        room = [True]

        def try_write(frame: bytes) -> bool:
            if room[0]:
                written.append(frame)
            return room[0]

        box = ClientOutbox(10, 1000, lambda r: None, try_write=try_write)
        sent: list[bytes] = []
        gate = asyncio.Event()
        progress: asyncio.Queue[bytes] = asyncio.Queue()

        async def send(data: bytes) -> None:
            await gate.wait()
            sent.append(data)
            progress.put_nowait(data)

        runner = asyncio.ensure_future(box.run(send))
        assert box.put(b"a", b"frame-a") and written == [b"frame-a"] and len(box) == 0
        assert box.put(b"sync")  # no frame given: always queued (e.g. a sync)
        assert box.put(b"b", b"frame-b")  # something is queued: keep the order, queue this too
        room[0] = False
        await asyncio.sleep(0)
        gate.set()
        assert [await asyncio.wait_for(progress.get(), 5) for _ in range(2)] == [b"sync", b"b"]
        assert sent == [b"sync", b"b"] and written == [b"frame-a"]
        assert box.put(b"c", b"frame-c")  # idle again but the socket is full: queued, sent by the task
        assert await asyncio.wait_for(progress.get(), 5) == b"c"
        box.close()
        await asyncio.wait_for(runner, 5)

    asyncio.run(main())
