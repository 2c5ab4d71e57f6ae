"""Pricing and notifications for the orders example, written with the published iii-sdk.

`iii run` starts this file (see config.yaml), but it is not a stdio worker: it connects to the
engine's worker port over WebSocket (``III_URL``, default ws://127.0.0.1:49134) exactly as a
worker on another machine would. Run it by hand against a running engine with
``python examples/orders/remote_worker.py``.
"""

from __future__ import annotations

import os
import sys
import threading

try:
    from iii import InitOptions, register_worker
except ImportError:  # pragma: no cover - iii-sdk is a dependency of iii-engine
    print("pricing worker not started: the iii-sdk package is missing (pip install iii-sdk==0.25.0); "
          "POST /orders answers 503 until it runs", file=sys.stderr)
    sys.exit(0)  # not a crash: the engine does not restart it

# Prices in cents: the catalogue lives here, so the HTTP API asks this worker what exists.
PRICES = {"coffee": 350, "tea": 300, "croissant": 275, "scone": 325, "jam": 150}


def quote(data: dict) -> dict:
    """{items: [{sku, qty}]} -> {lines, total_cents, unknown: [sku, ...]}"""
    lines, unknown = [], []
    for item in data.get("items") or []:
        price = PRICES.get(item["sku"])
        if price is None:
            unknown.append(item["sku"])
            continue
        lines.append({"sku": item["sku"], "qty": item["qty"], "unit_cents": price, "cents": price * item["qty"]})
    return {"lines": lines, "total_cents": sum(line["cents"] for line in lines), "unknown": unknown,
            "catalogue": sorted(PRICES)}


def send(data: dict) -> dict:
    """{customer, order_id, text} -> {sent, channel}. A real app would send an e-mail here."""
    print(f"notify {data['customer']}: {data['text']} ({data['order_id']})", flush=True)
    return {"sent": True, "channel": "log"}


iii = register_worker(os.environ.get("III_URL", "ws://127.0.0.1:49134"),
                      InitOptions(worker_name="pricing", otel={"enabled": False}))
iii.register_function("pricing::quote", quote, description="Price a list of {sku, qty}")
iii.register_function("notifications::send", send, description="Tell a customer about their order")
print(f"pricing worker connected; selling {', '.join(sorted(PRICES))}", flush=True)
threading.Event().wait()  # serve until the engine stops us (SIGTERM)
