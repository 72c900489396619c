"""datetime ⇄ google.protobuf.Timestamp at the edge of every service."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    """The protobuf Timestamp of an aware datetime (None stays unset).

    Exact integer arithmetic, several times cheaper than `Timestamp.FromDatetime` on the
    allocation hot path.
    """
    if value is None:
        return None
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)
