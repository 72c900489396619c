"""The one exception hierarchy of the platform.

Domain code raises these; `libs.common.error_status` turns them into a gRPC status with
exactly one `google.rpc.ErrorInfo`. Anything else that escapes a handler becomes
INTERNAL with a generic message.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from libs.common.reasons import Reason

T = TypeVar("T")
K = TypeVar("K")


class ErrorKind(enum.Enum):
    """The family of an error; maps one-to-one onto a gRPC status code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    OUT_OF_RANGE = "OUT_OF_RANGE"


class DomainError(Exception):
    """An error the caller can act on: a kind, an UPPER_SNAKE reason and a message."""

    kind: ClassVar[ErrorKind]

    def __init__(
        self,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        details: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        # Extra protobuf messages for the status details (set at the edge, never in domain).
        self.details = details


class InvalidArgument(DomainError):
    """The request itself is wrong; retrying it unchanged cannot succeed."""

    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(DomainError):
    """The named thing does not exist for this company."""

    kind = ErrorKind.NOT_FOUND


class FailedPrecondition(DomainError):
    """A business rule refuses the request in the current state."""

    kind = ErrorKind.FAILED_PRECONDITION


class Aborted(DomainError):
    """The request lost a race; it may be retried with the same request_id."""

    kind = ErrorKind.ABORTED


class Unavailable(DomainError):
    """A dependency is down; retry later with the same request_id."""

    kind = ErrorKind.UNAVAILABLE


class ResourceExhausted(DomainError):
    """The service sheds load instead of queueing without bound."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class DeadlineExceeded(DomainError):
    """The caller's deadline passed before the work could start."""

    kind = ErrorKind.DEADLINE_EXCEEDED


class PermissionDenied(DomainError):
    """The caller is known but may not do this (its identity or its token's scope)."""

    kind = ErrorKind.PERMISSION_DENIED


class Unauthenticated(DomainError):
    """The caller presented no valid identity or token."""

    kind = ErrorKind.UNAUTHENTICATED


class OutOfRange(DomainError):
    """A valid value outside the range the service can answer for now: a past instant
    beyond the history kept, a future one, an expired event cursor."""

    kind = ErrorKind.OUT_OF_RANGE


_CLASSES: dict[ErrorKind, type[DomainError]] = {
    cls.kind: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        Aborted,
        Unavailable,
        ResourceExhausted,
        DeadlineExceeded,
        PermissionDenied,
        Unauthenticated,
        OutOfRange,
    )
}


def error_of(
    reason: Reason,
    message: str,
    metadata: Mapping[str, str] | None = None,
    details: tuple[Any, ...] = (),
) -> DomainError:
    """The domain error of a registered reason, of the class its status code names."""
    return _CLASSES[reason.kind](reason.name, message, metadata, details)


def invalid(field: str, message: str, reason: str = "INVALID_FIELD") -> InvalidArgument:
    """An INVALID_ARGUMENT naming the offending field."""
    return InvalidArgument(reason, f"{field}: {message}", {"field": field})


def required(found: T | None, missing: Callable[[K], Exception], key: K) -> T:
    """`found`, or the error `missing(key)` when nothing was found (`plan_not_found(plan_id)`)."""
    if found is None:
        raise missing(key)
    return found
