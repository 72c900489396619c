from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from libs.common.timestamps import timestamp


def test_timestamp_matches_protobufs_own_conversion() -> None:
    for value in (
        datetime(2026, 2, 28, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 0, tzinfo=timezone(timedelta(hours=-5))),
    ):
        expected = Timestamp()
        expected.FromDatetime(value)
        assert timestamp(value) == expected
        stamp = timestamp(value)
        assert stamp is not None
        assert stamp.ToDatetime(tzinfo=UTC) == value
    assert timestamp(None) is None
