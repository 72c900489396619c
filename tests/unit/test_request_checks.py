"""The checks every request passes before a handler sees it (no database needed)."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from libs.common.errors import InvalidArgument
from libs.common.request_checks import (
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    UndecodableRequest,
    check_message,
    decoder,
)
from licensing.billing.v1 import billing_pb2 as bpb
from licensing.credits.v1 import credits_pb2 as cpb
from licensing.pool.v1 import pool_pb2 as pb


def refusal(message: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as raised:
        check_message(message)  # type: ignore[arg-type]
    return raised.value


def test_a_nul_anywhere_is_refused_naming_its_field() -> None:
    top = refusal(pb.AcquireRequest(request_id="a\x00b"))
    assert (top.reason, top.metadata["field"]) == ("INVALID_CHARACTERS", "request_id")
    nested = refusal(
        pb.AcquireRequest(request_id="r", assignees=[pb.Assignee(id="ok"), pb.Assignee(id="\x00")])
    )
    assert nested.metadata["field"] == "assignees[1].id"


def test_map_keys_and_values_are_checked() -> None:
    failure = cpb.RecordError(metadata={"k": "v\x00"})
    assert refusal(failure).metadata["field"].startswith("metadata[")
    key = cpb.RecordError(metadata={"\x00": "v"})
    assert refusal(key).reason == "INVALID_CHARACTERS"


def test_other_control_characters_and_long_text_pass_these_checks() -> None:
    # Only what PostgreSQL cannot store is refused here; field rules are the services'.
    check_message(pb.AcquireRequest(request_id="\x01\x1b\x7f" + "é" * 10_000))


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (MIN_TIMESTAMP_SECONDS - 1, 0),
        (MAX_TIMESTAMP_SECONDS + 1, 0),
        (0, -1),
        (0, 1_000_000_000),
        (-(2**63), 0),
    ],
)
def test_invalid_timestamps_are_refused(seconds: int, nanos: int) -> None:
    request = bpb.CreatePlanRequest(
        plan=bpb.Plan(start_time=Timestamp(seconds=seconds, nanos=nanos))
    )
    error = refusal(request)
    assert (error.reason, error.metadata["field"]) == ("INVALID_TIMESTAMP", "plan.start_time")


def test_the_extreme_valid_timestamps_pass() -> None:
    for seconds in (MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS):
        check_message(
            bpb.CreatePlanRequest(
                plan=bpb.Plan(start_time=Timestamp(seconds=seconds, nanos=999_999_999))
            )
        )


def test_undecodable_bytes_are_invalid_argument_with_a_generic_message() -> None:
    decode = decoder("/x/Y", pb.AcquireRequest.FromString)
    # Field 1 (request_id) as a string of 2 bytes that are not UTF-8.
    for raw in (b"\x0a\x02\xff\xfe", b"\xff\xff\xff\xff", b"\x0a\x10ab"):
        with pytest.raises(UndecodableRequest) as raised:
            decode(raw)
        assert raised.value.reason == "MALFORMED_REQUEST"
        assert "Decode" not in raised.value.message


def test_the_decoder_checks_what_it_decodes() -> None:
    decode = decoder("/x/Y", pb.AcquireRequest.FromString)
    with pytest.raises(InvalidArgument):
        decode(pb.AcquireRequest(office_id="\x00").SerializeToString())
    decoded = decode(pb.AcquireRequest(office_id="o", quantity=3).SerializeToString())
    assert (decoded.office_id, decoded.quantity) == ("o", 3)
