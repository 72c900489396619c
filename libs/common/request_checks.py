"""Checks every request passes before any handler sees it, whatever its method.

The server decodes request bytes itself (instead of letting gRPC do it), so bytes that do
not parse are refused INVALID_ARGUMENT with a generic message rather than UNKNOWN with
the parser's internals. Every decoded request is then checked against what PostgreSQL
can store: no NUL character in any string (text columns refuse U+0000), and every
`google.protobuf.Timestamp` a valid instant (years 0001..9999, nanos 0..999,999,999).
The failure names the offending field (`assignees[0].id`), before any effect.

The checks are derived from the message descriptors, so a new RPC gets them for free.
They cost next to nothing on hot paths: a message whose wire bytes hold no zero byte has
no NUL in any string, and messages without Timestamp fields skip that walk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from libs.common.errors import InvalidArgument, invalid
from libs.common.logging_limits import RateLimitedWarning

# The range google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
MAX_NANOS = 999_999_999
_TIMESTAMP = "google.protobuf.Timestamp"

Deserializer = Callable[[bytes], Message]


class UndecodableRequest(InvalidArgument):
    """Request bytes that do not parse as the method's request message."""

    def __init__(self) -> None:
        super().__init__("MALFORMED_REQUEST", "the request could not be decoded")


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a message type can hold that needs checking."""

    strings: bool  # some string field, here or nested
    timestamps: bool  # some Timestamp field, here or nested


@cache
def _shape(descriptor: Descriptor) -> _Shape:
    strings = timestamps = False
    seen: set[str] = set()
    pending = [descriptor]
    while pending:
        current = pending.pop()
        if current.full_name in seen:
            continue
        seen.add(current.full_name)
        if current.full_name == _TIMESTAMP:
            timestamps = True
            continue
        for field in current.fields:
            if field.type == FieldDescriptor.TYPE_STRING:
                strings = True
            elif field.message_type is not None:
                pending.append(field.message_type)
    return _Shape(strings, timestamps)


def _bad_timestamp(message: Message) -> str | None:
    seconds: int = message.seconds  # type: ignore[attr-defined]
    nanos: int = message.nanos  # type: ignore[attr-defined]
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        return "is not a valid timestamp: seconds outside 0001-01-01..9999-12-31"
    if not 0 <= nanos <= MAX_NANOS:
        return "is not a valid timestamp: nanos outside 0..999,999,999"
    return None


def _check_value(field: FieldDescriptor, value: Any, path: str) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        if "\x00" in value:
            raise invalid(path, "contains a NUL character", "INVALID_CHARACTERS")
    elif field.message_type is not None:
        check_message(value, path)


def check_message(message: Message, prefix: str = "") -> None:
    """Raises INVALID_ARGUMENT naming the first field PostgreSQL could not store."""
    descriptor = message.DESCRIPTOR
    if descriptor.full_name == _TIMESTAMP:
        problem = _bad_timestamp(message)
        if problem is not None:
            raise invalid(prefix or "timestamp", problem, "INVALID_TIMESTAMP")
        return
    shape = _shape(descriptor)
    if not (shape.strings or shape.timestamps):
        return
    for field, value in message.ListFields():
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                _check_value(key_field, key, f"{path}[{key!r}]"[:128])
                _check_value(value_field, item, f"{path}[{key!r}]"[:128])
        elif field.is_repeated:
            for index, item in enumerate(value):
                _check_value(field, item, f"{path}[{index}]")
        else:
            _check_value(field, value, path)


_undecodable = RateLimitedWarning(10.0)


def decoder(method: str, deserializer: Deserializer | None) -> Callable[[bytes], Any]:
    """Decodes and checks one method's request bytes; refusals are INVALID_ARGUMENT.
    A method without a deserializer takes its bytes as they are."""
    if deserializer is None:
        return lambda raw: raw
    shape: _Shape | None = None

    def decode(raw: bytes) -> Message:
        nonlocal shape
        try:
            request = deserializer(raw)
        except Exception:  # the parser's exception types differ by backend
            _undecodable.warn("refused an undecodable request to %s", method)
            raise UndecodableRequest() from None
        if shape is None:
            shape = _shape(request.DESCRIPTOR)
        # No zero byte on the wire: no string holds a NUL (the common case, one scan).
        if shape.timestamps or (shape.strings and b"\x00" in raw):
            check_message(request)
        return request

    return decode
