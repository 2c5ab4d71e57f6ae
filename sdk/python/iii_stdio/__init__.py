"""iii_stdio: write iii workers in Python.

The engine starts the worker as a child process and speaks JSON-RPC 2.0 with it,
one message per line, over its stdin/stdout (see docs/protocol-stdio.md)::

    from iii_stdio import Worker

    worker = Worker()

    @worker.function("math::add", description="adds two numbers")
    def add(data):
        return data["a"] + data["b"]

    worker.run()

Standard library only, and cheap to import: asyncio is loaded only once an async
handler is registered.
"""

from .context import Invocation, current_invocation
from .errors import InvocationError
from .worker import Logger, Worker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .helpers import State, Streams, ops


def __getattr__(name: str) -> object:
    """``State``, ``Streams`` and ``ops`` load on first use: a worker's start (and so every
    restart) does not compile them unless it needs them."""
    if name in ("State", "Streams", "ops"):
        from . import helpers

        return getattr(helpers, name)
    raise AttributeError(f"module 'iii_stdio' has no attribute {name!r}")

__all__ = ["Worker", "InvocationError", "Invocation", "Logger", "current_invocation", "State", "Streams", "ops"]
__version__ = "0.1.0"
