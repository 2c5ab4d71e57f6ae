"""The ``enqueue`` action of a call, for any transport: the call becomes a job on a named queue.

The transport turns ``{function_id, data, action: {type: "enqueue", queue}}`` into a call of
``engine::queue::enqueue`` (provided by the queue module, as in the original engine) and answers
the caller with ``{messageReceiptId}`` once the job is durably queued.
"""

from __future__ import annotations

import uuid
from typing import Any

from supervisor.errors import InvocationError

ENQUEUE_FUNCTION = "engine::queue::enqueue"


def enqueue_request(action: dict[str, Any], function_id: str, data: Any, call: dict[str, Any]) -> dict[str, Any]:
    return {"queue": action.get("queue"), "function_id": function_id, "data": data,
            "messageReceiptId": str(uuid.uuid4()), "traceparent": call.get("traceparent"),
            "baggage": call.get("baggage")}


def enqueue_error(exc: InvocationError) -> dict[str, Any]:
    """Errors as the SDKs expect them: ``enqueue_error``, saying how to fix a missing queue module."""
    if exc.code == "function_not_found":
        return {"code": "enqueue_error", "message": "No queue provider is installed: add "
                "`- class: modules::queue::QueueModule` to config.yaml to use the enqueue action"}
    if exc.code == "deserialization_error":
        return {"code": "enqueue_error", "message": exc.message}
    return exc.to_body()
