"""What the stream module raises, beside the engine's tree (``supervisor.errors``)::

    InvocationError
    └── StreamError              a stream::* built-in failed; ``code`` is STREAM_<OP>_ERROR
        └── CustomBackendError   a worker's stream::<op>(<name>) failed or answered a wrong shape
    ProtocolError
    └── ClientMessageError       a stream client sent a frame that is not a join/leave we accept
"""

from __future__ import annotations

from supervisor.errors import InvocationError, ProtocolError


class StreamError(InvocationError):
    """A stream built-in failed (storage unreachable, value too large...)."""

    code = "STREAM_ERROR"


class CustomBackendError(StreamError):
    """The worker that took over a stream's storage failed or answered with the wrong shape."""


class ClientMessageError(ProtocolError):
    """A client frame was not valid JSON or not a ``join``/``leave`` with the fields it needs."""
