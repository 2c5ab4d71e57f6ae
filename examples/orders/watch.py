"""Watch the `orders` stream live: a WebSocket client of the engine's stream port.

    python examples/orders/watch.py            # every order (group `all`)
    python examples/orders/watch.py ada        # only ada's orders
    python examples/orders/watch.py --url ws://127.0.0.1:3112 all

Prints one line per change; --json prints the engine's messages as they arrive. Ctrl-C stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

import aiohttp


def describe(order: dict) -> str:
    line = f"{order['id']} {order['customer']}: {order['status']} ({order['total_cents']} cents)"
    if order.get("attempts"):
        line += f", attempt {order['attempts']}"
    if order.get("last_error"):
        line += f", {order['last_error']}"
    return line


async def watch(url: str, group: str, raw: bool) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, heartbeat=30) as ws:
        await ws.send_json({"type": "join", "data": {"subscriptionId": "watch", "streamName": "orders",
                                                     "groupId": group}})
        print(f"watching stream 'orders', group {group!r} on {url}", flush=True)
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if raw:
                print(msg.data, flush=True)
                continue
            event = json.loads(msg.data).get("event", {})
            kind, data = event.get("type"), event.get("data")
            if kind == "sync":
                print(f"sync: {len(data)} order(s)", flush=True)
                for order in data:
                    print(f"  {describe(order)}", flush=True)
            elif kind in ("create", "update"):
                print(f"{kind}: {describe(data)}", flush=True)
            else:
                print(f"{kind}: {json.dumps(data)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group", nargs="?", default="all", help="a customer's name, or `all` (default)")
    parser.add_argument("--url", default=f"ws://127.0.0.1:{os.environ.get('STREAM_PORT', '3112')}/")
    parser.add_argument("--json", action="store_true", help="print the raw stream messages")
    args = parser.parse_args()
    try:
        asyncio.run(watch(args.url, args.group, args.json))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
