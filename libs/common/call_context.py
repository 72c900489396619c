"""What the server knows about the call being handled: its method and its deadline.

The guard around every handler (`error_status.CallGuard`) sets it when a call starts;
anything below the handler may read it without it being passed down: the idempotency
key takes the method name from it, and peer calls take their deadline from what is left
of the caller's.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CallContext:
    """The method being served and the caller's deadline (monotonic clock), if any."""

    method: str
    deadline: float | None

    def time_remaining(self) -> float | None:
        """Seconds left before the caller's deadline (None: the caller set none)."""
        return None if self.deadline is None else self.deadline - time.monotonic()


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "licensing_call", default=None
)


def begin(method: str, time_remaining: float | None) -> contextvars.Token[CallContext | None]:
    """Marks the start of a call in this task's context."""
    deadline = None if time_remaining is None else time.monotonic() + time_remaining
    return _current.set(CallContext(method, deadline))


def end(token: contextvars.Token[CallContext | None]) -> None:
    _current.reset(token)


def current() -> CallContext | None:
    """The call this code runs for (None in background tasks)."""
    return _current.get()


def time_remaining() -> float | None:
    """Seconds left of the current caller's deadline (None: no call, or no deadline)."""
    call = _current.get()
    return None if call is None else call.time_remaining()
