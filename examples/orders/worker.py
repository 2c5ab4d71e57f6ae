"""The orders worker, in Python with the stdio SDK (iii_stdio). `iii run` starts it (config.yaml).

- ``orders::process`` handles the ``orders`` queue (the Node API enqueues one message per order):
  charges the card, writes the order to state and pushes every change to the ``orders`` stream
  (groups: the customer's name and ``all``), then asks the remote pricing worker to notify the
  customer. A failed payment raises: the queue retries it with backoff, and after the last attempt
  the message goes to the dead-letter queue.
- ``reports::orders_by_status`` runs on a cron schedule (``ORDERS_REPORT_CRON``, every 10 s by
  default) and stores the count of orders by status in state ``reports/latest``.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime

from iii_stdio import State, Streams, Worker, current_invocation

worker = Worker()
state = State(worker)
streams = Streams(worker)

THANKS = "thank you for your order"

# Test cards, as a payment provider's sandbox has them.
APPROVED = "4242424242424242"  # always approved (the default)
FLAKY = "4000000000000119"  # the gateway times out on the first attempt, then approves
DECLINED = "4000000000000002"  # always declined: ends in the dead-letter queue


class PaymentError(Exception):
    pass


def charge(order: dict, attempt: int) -> str:
    """Pretend to charge the card; returns a charge id or raises PaymentError."""
    if order["card"] == DECLINED:
        raise PaymentError("card declined")
    if order["card"] == FLAKY and attempt == 1:
        raise PaymentError("payment gateway timed out")
    return f"ch-{order['id']}-{attempt}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def save(order: dict, **changes: object) -> dict:
    """Write the order to state, then push it (without the card number) to the stream."""
    order = {k: v for k, v in {**order, **changes, "updated_at": now()}.items() if v is not None}
    state.set("orders", order["id"], order)
    visible = {k: v for k, v in order.items() if k != "card"}
    for group in (order["customer"], "all"):
        streams.set("orders", group, order["id"], visible)
    return order


@worker.function("orders::process", description="Charge an order's card and record the outcome")
def process(job: dict) -> dict:
    order = state.get("orders", job["id"])
    if order is None:
        worker.logger.warning("no such order, dropping the message", job)
        return {"skipped": True}
    if order["status"] == "paid":  # a redelivery after a crash: the work is done
        return {"id": order["id"], "status": "paid"}
    delivery = current_invocation().metadata["queue"]  # {message_id, queue, attempt, max_attempts}
    attempts = delivery["attempt"]
    try:
        charge_id = charge(order, attempts)
    except PaymentError as exc:
        last = attempts >= delivery["max_attempts"]
        save(order, status="failed" if last else "retrying", attempts=attempts, last_error=str(exc))
        raise  # the queue retries with backoff; after the last attempt: the dead-letter queue
    order = save(order, status="paid", attempts=attempts, charge_id=charge_id, note=THANKS, last_error=None)
    worker.logger.info(f"order {order['id']} paid", {"attempts": attempts, "total_cents": order["total_cents"]})
    try:  # the customer hears about it from the remote (iii-sdk) worker; a failure here is not fatal
        worker.trigger("notifications::send", {"customer": order["customer"], "order_id": order["id"],
                                               "text": f"order paid, {THANKS}"}, timeout_ms=5000)
    except Exception as exc:
        worker.logger.warning(f"could not notify {order['customer']}: {exc}")
    return {"id": order["id"], "status": "paid"}


@worker.function("reports::orders_by_status", description="Count orders by status into state reports/latest")
def report(tick: dict) -> dict:
    orders = state.list("orders")
    by_status = dict(sorted(Counter(o["status"] for o in orders).items()))
    latest = {"at": tick["scheduled_time"], "orders": len(orders), "by_status": by_status}
    state.set("reports", "latest", latest)
    summary = ", ".join(f"{status}={n}" for status, n in by_status.items()) or "none yet"
    worker.logger.info(f"report: {len(orders)} orders ({summary})")
    return latest


worker.register_trigger("cron", "reports::orders_by_status",
                        {"expression": os.environ.get("ORDERS_REPORT_CRON") or "*/10 * * * * *"})
worker.run()
