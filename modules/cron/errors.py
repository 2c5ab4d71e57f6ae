"""The cron module's errors, each a kind of the engine's own (``supervisor.errors``)::

    EngineError
    ├── CronError                      anything the cron module raises on purpose
    │   └── CronLockError              the lock store (SQLite file, Redis) could not be read or written
    └── RegistrationError
        └── TriggerConfigError         a ``cron`` trigger's config was refused at registration
            ├── CronExpressionError    the expression is empty, has the wrong field count, a bad field,
            │                          or never matches a future time (names the expression and the field)
            └── UnknownTimeZone        ``timezone`` is not an IANA name the system knows

A refused registration reaches the worker as the error of its ``register_trigger`` call.
"""

from __future__ import annotations

from supervisor.errors import EngineError, TriggerConfigError


class CronError(EngineError):
    """Base of the cron module's own runtime errors."""


class CronLockError(CronError):
    """The lock store failed; the tick is skipped (never fired without its lock)."""


class CronExpressionError(TriggerConfigError):
    """A cron expression was refused; the message names the expression and what is wrong."""

    def __init__(self, expression: object, problem: str) -> None:
        self.expression = expression
        self.problem = problem
        super().__init__(f"cron trigger: invalid expression {expression!r}: {problem}")


class UnknownTimeZone(TriggerConfigError):
    """The trigger's ``timezone`` is not a known IANA time zone."""

    def __init__(self, name: object) -> None:
        self.name = name
        super().__init__(f"cron trigger: unknown time zone {name!r} "
                         "(use an IANA name such as 'Europe/Paris', 'America/New_York' or 'UTC')")
