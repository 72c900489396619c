"""licensing.client: the service config every channel gets, and reading ErrorInfo."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from licensing import client
from licensing.client import channels as client_channels
from licensing.client import errors


def test_retries_only_for_methods_that_carry_a_request_id() -> None:
    config = json.loads(client.service_config())
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method_config,) = config["methodConfig"]
    names = {(n["service"], n["method"]) for n in method_config["name"]}
    assert ("licensing.pool.v1.PoolService", "Reserve") in names
    assert ("licensing.billing.v1.BillingService", "PurchaseLicenses") in names
    assert ("licensing.pool.v1.PoolService", "GetOffice") not in names  # a read
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE", "ABORTED"]
    assert {s.full_name for s in client.SERVICES} == {
        f"licensing.{s}.v1.{s.title()}Service"
        for s in ("pool", "billing", "credits", "provisioning")
    }


def test_equal_message_limits_both_ways() -> None:
    options = dict(client.channel_options())
    assert options["grpc.max_receive_message_length"] == 64 * 1024 * 1024
    assert options["grpc.max_send_message_length"] == 64 * 1024 * 1024
    assert options["grpc.keepalive_time_ms"] == 30_000


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="private key"):
        client.Tls(certificate_chain=b"cert").credentials()


class Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, status: status_pb2.Status | None) -> None:
        self._code = code
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._code

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        if self._status is None:
            return ()
        return ((errors.DETAILS_KEY, self._status.SerializeToString()),)


def packed(message: object) -> any_pb2.Any:
    found = any_pb2.Any()
    found.Pack(message)  # type: ignore[arg-type]
    return found


def test_reads_the_error_info_and_the_other_details() -> None:
    info = error_details_pb2.ErrorInfo(reason="OVERLOADED", domain="pool.licensing")
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=250_000_000))
    status = status_pb2.Status(code=8, message="busy", details=[packed(retry), packed(info)])
    failed = Failed(grpc.StatusCode.RESOURCE_EXHAUSTED, status)
    assert client.reason(failed) == "OVERLOADED"
    assert client.error_info(failed) == info
    assert [d.TypeName() for d in client.other_details(failed)] == ["google.rpc.RetryInfo"]
    assert client.retry_delay_seconds(failed) == 0.25


def test_no_details_when_absent_or_not_matching_the_code() -> None:
    info = error_details_pb2.ErrorInfo(reason="OVERLOADED")
    status = status_pb2.Status(code=8, details=[packed(info)])
    assert client.error_info(Failed(grpc.StatusCode.NOT_FOUND, status)) is None
    assert client.error_info(Failed(grpc.StatusCode.NOT_FOUND, None)) is None
    assert client.other_details(Failed(grpc.StatusCode.NOT_FOUND, None)) == ()


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("ipv4:127.0.0.1:50051,127.0.0.1:50061", "127.0.0.1"),
        ("ipv4:///10.0.0.5:50051", "10.0.0.5"),
        ("ipv6:[::1]:50051,[::1]:50061", "::1"),
        ("pool:50051", None),
        ("dns:///pool.licensing.svc:50051", None),
    ],
)
def test_a_list_of_addresses_is_checked_against_its_first_host(
    target: str, host: str | None
) -> None:
    assert client_channels.address_list_host(target) == host
