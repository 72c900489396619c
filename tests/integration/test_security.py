"""Mutual TLS, caller permissions and company-scoped tokens, against running services.

The policy the services enforce is the shipped default (libs/common/policy.toml): the
tests read that same file, never a copy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from libs.common import authz, local_pki, peer, tls
from libs.common.authz import DEFAULT_POLICY, Policy
from libs.common.tokens import Token
from licensing.billing.v1 import billing_pb2, billing_pb2_grpc
from licensing.credits.v1 import credits_pb2, credits_pb2_grpc
from licensing.pool.v1 import pool_pb2 as ppb
from licensing.pool.v1 import pool_pb2_grpc
from licensing.provisioning.v1 import provisioning_pb2, provisioning_pb2_grpc
from tests.support import tls as test_tls
from tests.support.billing import running_billing
from tests.support.credits import running_credits
from tests.support.pool import new_company, reason_of, running_pool
from tests.support.provisioning import running_provisioning_only

POOL = ppb.DESCRIPTOR.services_by_name["PoolService"]
BILLING = billing_pb2.DESCRIPTOR.services_by_name["BillingService"]
CREDITS = credits_pb2.DESCRIPTOR.services_by_name["CreditsService"]
PROVISIONING = provisioning_pb2.DESCRIPTOR.services_by_name["ProvisioningService"]
SERVICES: dict[str, tuple[ServiceDescriptor, Any]] = {
    "pool": (POOL, pool_pb2_grpc.PoolServiceStub),
    "billing": (BILLING, billing_pb2_grpc.BillingServiceStub),
    "credits": (CREDITS, credits_pb2_grpc.CreditsServiceStub),
    "provisioning": (PROVISIONING, provisioning_pb2_grpc.ProvisioningServiceStub),
}
IDENTITIES = (
    "operator",
    "pool",
    "billing",
    "credits",
    "provisioning",
    "rating",
    "console",
    "consumer-notifications",
    "stranger",
)


def spiffe(name: str) -> str:
    return local_pki.identity_of(name)


async def health(channel: grpc.aio.Channel) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(response.status)


def raw_credentials(directory: Path, name: str, ca: Path | None = None) -> grpc.ChannelCredentials:
    return tls.client_credentials(
        tls.TlsFiles(
            directory / f"{name}.crt", directory / f"{name}.key", ca or directory / "ca.crt"
        )
    )


# --- the handshake ---------------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="session")
async def pool_address(database_url: str) -> AsyncIterator[str]:
    async with running_pool(database_url, sweep_interval_seconds=3600, health_port=0) as (app, _):
        yield f"127.0.0.1:{app.port}"


async def test_the_ca_s_operator_is_served(pool_address: str) -> None:
    async with test_tls.channel(pool_address) as channel:
        assert await health(channel) == health_pb2.HealthCheckResponse.SERVING


async def test_a_plaintext_client_is_refused(pool_address: str) -> None:
    async with grpc.aio.insecure_channel(pool_address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_without_certificate_is_refused(pool_address: str) -> None:
    ca = test_tls.pki().ca.read_bytes()
    async with grpc.aio.secure_channel(pool_address, grpc.ssl_channel_credentials(ca)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_is_refused(pool_address: str, tmp_path: Path) -> None:
    other = local_pki.ensure(tmp_path, ["billing"])  # a CA of its own, same names
    # It trusts our server (our CA), but presents a certificate our CA did not sign.
    credentials = raw_credentials(tmp_path, "operator", ca=test_tls.pki().ca)
    async with grpc.aio.secure_channel(pool_address, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert other.ca.read_bytes() != test_tls.pki().ca.read_bytes()


async def test_an_expired_certificate_is_refused(pool_address: str, tmp_path: Path) -> None:
    ca = local_pki.load_ca(test_tls.pki().directory)
    long_ago = datetime.now(UTC) - timedelta(days=30)
    local_pki.issue(
        ca,
        tmp_path / "old.crt",
        tmp_path / "old.key",
        local_pki.OPERATOR_IDENTITY,
        not_before=long_ago,
        not_after=long_ago + timedelta(days=1),
    )
    credentials = raw_credentials(tmp_path, "old", ca=test_tls.pki().ca)
    async with grpc.aio.secure_channel(pool_address, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_health_has_a_plaintext_port_that_serves_nothing_else(database_url: str) -> None:
    async with running_pool(database_url, sweep_interval_seconds=3600, health_port=0) as (app, _):
        assert app.server.health_port is not None
        plain = f"127.0.0.1:{app.server.health_port}"
        async with grpc.aio.insecure_channel(plain) as channel:
            assert await health(channel) == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pool_pb2_grpc.PoolServiceStub(channel).GetPool(
                    ppb.GetPoolRequest(company_id=str(uuid.uuid4()), currency="USD"), timeout=5
                )
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_rotated_files_are_used_by_new_handshakes_without_a_restart(
    database_url: str, tmp_path: Path
) -> None:
    first, second, live = tmp_path / "first", tmp_path / "second", tmp_path / "live"
    local_pki.ensure(first, ["pool"])
    local_pki.ensure(second, ["pool"])  # a new CA: rotation is visible from outside
    live.mkdir()
    for name in ("pool.crt", "pool.key", "ca.crt"):
        shutil.copy(first / name, live / name)
    files = {
        "tls_cert_file": str(live / "pool.crt"),
        "tls_key_file": str(live / "pool.key"),
        "tls_ca_file": str(live / "ca.crt"),
    }
    async with running_pool(database_url, sweep_interval_seconds=3600, **files) as (app, _):
        address = f"127.0.0.1:{app.port}"
        async with grpc.aio.secure_channel(address, raw_credentials(first, "operator")) as old:
            assert await health(old) == health_pb2.HealthCheckResponse.SERVING
            for name in ("pool.crt", "pool.key", "ca.crt"):  # replaced as cert-manager does
                shutil.copy(second / name, live / f".{name}")
                (live / f".{name}").replace(live / name)
            # The open connection keeps working; new handshakes use the new files.
            assert await health(old) == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.secure_channel(address, raw_credentials(second, "operator")) as new:
            assert await health(new) == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.secure_channel(address, raw_credentials(first, "operator")) as stale:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health(stale)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert app.server.credentials is not None
        assert app.server.credentials.reloads >= 1


# --- permissions: every method, every identity ------------------------------------------
@pytest_asyncio.fixture(loop_scope="session")
async def addresses(database_url: str) -> AsyncIterator[dict[str, str]]:
    async with AsyncExitStack() as stack:
        pool, _ = await stack.enter_async_context(
            running_pool(database_url, sweep_interval_seconds=3600)
        )
        pool_address = f"127.0.0.1:{pool.port}"
        billing, _ = await stack.enter_async_context(running_billing(database_url, pool_address))
        credits, _ = await stack.enter_async_context(running_credits(database_url))
        platform = await stack.enter_async_context(
            running_provisioning_only(
                database_url,
                pool_pb2_grpc.PoolServiceStub(test_tls.channel(pool_address)),
                pool_address,
                billing_address=f"127.0.0.1:{billing.port}",
            )
        )
        yield {
            "pool": pool_address,
            "billing": f"127.0.0.1:{billing.port}",
            "credits": f"127.0.0.1:{credits.port}",
            "provisioning": f"127.0.0.1:{platform.provisioning.port}",
        }


def request_for(method: MethodDescriptor, company_id: str) -> Any:
    """An empty request of the method, naming `company_id` where it has the field (the
    handler may refuse it as invalid: only whether the caller got through matters)."""
    request = message_factory.GetMessageClass(method.input_type)()
    if "company_id" in method.input_type.fields_by_name:
        request.company_id = company_id
    return request


async def outcome(
    stub: Any, method: MethodDescriptor, request: Any, metadata: Any
) -> tuple[grpc.StatusCode, str]:
    call = getattr(stub, method.name)
    try:
        if method.server_streaming:
            async for _ in call(request, timeout=10, metadata=metadata):
                break
        else:
            await call(request, timeout=10, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return error.code(), reason_of(error)
    return grpc.StatusCode.OK, ""


@pytest.mark.slow
@pytest.mark.parametrize("identity", IDENTITIES)
async def test_every_method_is_allowed_or_refused_as_the_policy_says(
    addresses: dict[str, str], identity: str
) -> None:
    policy = Policy.load(DEFAULT_POLICY)
    company_id = str(uuid.uuid4())
    metadata = test_tls.bearer(test_tls.token([company_id])) if identity == "console" else None
    wrong: list[str] = []
    for service, (descriptor, stub_class) in SERVICES.items():
        async with test_tls.channel(addresses[service], identity) as channel:
            stub = stub_class(channel)
            for method in descriptor.methods:
                name = f"{descriptor.full_name}/{method.name}"
                allowed = policy.decide(spiffe(identity), name).allowed
                code, reason = await outcome(
                    stub, method, request_for(method, company_id), metadata
                )
                if allowed and code == grpc.StatusCode.PERMISSION_DENIED:
                    wrong.append(f"{name}: allowed, but refused {reason}")
                if allowed and code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                    wrong.append(f"{name}: allowed, but failed {code.name}")
                if not allowed and (code, reason) != (
                    grpc.StatusCode.PERMISSION_DENIED,
                    "CALLER_NOT_ALLOWED",
                ):
                    wrong.append(f"{name}: not allowed, but {code.name} {reason}")
    assert not wrong, "\n".join(wrong)


def test_the_shipped_policy_says_what_the_platform_promises() -> None:
    """The rules the platform's docs promise, read from the shipped file itself."""
    policy = Policy.load(DEFAULT_POLICY)
    pool = "licensing.pool.v1.PoolService"
    credits = "licensing.credits.v1.CreditsService"

    def may(name: str, method: str) -> bool:
        return policy.decide(spiffe(name), method).allowed

    for method in ("AddUnits", "MarkForRemoval", "TerminateUnits"):
        allowed = {n for n in IDENTITIES if may(n, f"{pool}/{method}")}
        assert {"operator", "billing"} <= allowed
        assert not allowed & {"rating", "console", "stranger", "credits", "pool"}
    assert {n for n in IDENTITIES if may(n, f"{pool}/AddUnits")} == {"operator", "billing"}
    assert {n for n in IDENTITIES if may(n, f"{credits}/GrantCredits")} == {"operator", "billing"}
    rating = [f"{credits}/{m.name}" for m in SERVICES["credits"][0].methods]
    rating += [f"{pool}/{m.name}" for m in POOL.methods]
    assert {m for m in rating if may("rating", m)} == {
        f"{credits}/RecordUsage",
        f"{credits}/BatchRecordUsage",
    }
    watches = {f"{service.full_name}/WatchEvents" for service, _ in SERVICES.values()} & {
        f"{s.full_name}/{m.name}" for s, _ in SERVICES.values() for m in s.methods
    }
    assert len(watches) == 3  # the pool, credits and billing stream their events
    consumer = [f"{s.full_name}/{m.name}" for s, _ in SERVICES.values() for m in s.methods]
    assert {m for m in consumer if may("consumer-notifications", m)} == watches
    assert not any(may(n, m) for n in ("rating", "stranger", "console") for m in watches)
    assert policy.decide(spiffe("console"), f"{pool}/ListUnits").token_required
    # A company admin sets the company's own limits on shared credits, through a token.
    for method in ("SetOfficeCreditCap", "ClearOfficeCreditCap", "SetCreditThresholds"):
        allowed = {n for n in IDENTITIES if may(n, f"{credits}/{method}")}
        assert allowed == {"operator", "console"}
        assert policy.decide(spiffe("console"), f"{credits}/{method}").token_required
    assert not policy.decide(spiffe("billing"), f"{pool}/ListUnits").token_required
    # Billing previews pools but may not enable them; it keeps credit accounts in step
    # and reads the overage it invoices.
    assert may("billing", f"{pool}/PreviewEnablePool")
    assert not may("billing", f"{pool}/EnablePool")
    assert may("billing", f"{credits}/PutAccount")
    assert may("billing", f"{credits}/GetPeriodOverage")
    assert may("console", "licensing.billing.v1.BillingService/PreviewEnablePool")


# --- company-scoped tokens ----------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="session")
async def two_companies(pool_address: str) -> tuple[str, str]:
    """Company A with two units, company B with one; set up by the operator."""
    async with test_tls.channel(pool_address) as channel:
        stub = pool_pb2_grpc.PoolServiceStub(channel)
        a, b = new_company(stub), new_company(stub)
        await a.office("hq", "USD")
        await a.add("hq", "phone_system", 2)
        await b.office("hq", "USD")
        await b.add("hq", "phone_system", 1)
    return a.company_id, b.company_id


async def list_units(address: str, company_id: str, metadata: Any) -> list[ppb.Unit]:
    async with test_tls.channel(address, "console") as channel:
        response = await pool_pb2_grpc.PoolServiceStub(channel).ListUnits(
            ppb.ListUnitsRequest(company_id=company_id), timeout=5, metadata=metadata
        )
    return list(response.units)


async def refused(address: str, company_id: str, metadata: Any) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await list_units(address, company_id, metadata)
    return error.value.code(), reason_of(error.value), error.value.details() or ""


async def test_a_token_of_the_company_reads_its_units(
    pool_address: str, two_companies: tuple[str, str]
) -> None:
    a, _ = two_companies
    units = await list_units(pool_address, a, test_tls.bearer(test_tls.token([a])))
    assert len(units) == 2
    assert {u.company_id for u in units} == {a}


async def test_another_company_s_id_is_refused_and_shows_nothing(
    pool_address: str, two_companies: tuple[str, str]
) -> None:
    a, b = two_companies
    code, reason, details = await refused(pool_address, b, test_tls.bearer(test_tls.token([a])))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "COMPANY_NOT_IN_SCOPE")
    assert b not in details


async def test_a_caller_that_must_send_a_token_and_sends_none_is_unauthenticated(
    pool_address: str, two_companies: tuple[str, str]
) -> None:
    a, _ = two_companies
    code, reason, _ = await refused(pool_address, a, None)
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED_CALLER")


async def test_an_event_consumer_with_a_company_token_watches_that_company_only(
    pool_address: str, two_companies: tuple[str, str]
) -> None:
    """The stream variant of the guard holds a streaming call to its token's companies
    too, before anything is read."""
    a, b = two_companies
    token = test_tls.bearer(test_tls.token([a]))
    async with test_tls.channel(pool_address, "consumer-notifications") as channel:
        stub = pool_pb2_grpc.PoolServiceStub(channel)
        call = stub.WatchEvents(ppb.WatchEventsRequest(company_id=a), timeout=10, metadata=token)
        first = await anext(aiter(call))
        call.cancel()
        assert [e.type for e in first.events] == ["pool.units.added"]
        assert {e.company_id for e in first.events} == {a}
        with pytest.raises(grpc.aio.AioRpcError) as error:
            async for _ in stub.WatchEvents(
                ppb.WatchEventsRequest(company_id=b), timeout=10, metadata=token
            ):
                pass
        assert (error.value.code(), reason_of(error.value)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "COMPANY_NOT_IN_SCOPE",
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.ListUnits(ppb.ListUnitsRequest(company_id=a), timeout=10, metadata=token)
        assert reason_of(error.value) == "CALLER_NOT_ALLOWED"


def _segment(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens(company_id: str) -> dict[str, str]:
    key = test_tls.pki().signing_key.read_bytes()
    now = int(time.time())
    claims = {"aud": "licensing", "exp": now + 600, "nbf": now, "company_ids": [company_id]}
    other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    header, _, signature = jwt.encode(claims, key, "ES256", headers={"kid": "local-1"}).split(".")
    public_pem = (
        serialization.load_pem_private_key(key, None)
        .public_key()
        .public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    def es256(changed: dict[str, Any], signing_key: bytes = key) -> str:
        return jwt.encode(changed, signing_key, "ES256", headers={"kid": "local-1"})

    other_company = str(uuid.uuid4())
    widened = _segment({**claims, "company_ids": [company_id, other_company]})
    return {
        "expired": es256({**claims, "exp": now - 3600}),
        "not yet valid": es256({**claims, "nbf": now + 3600}),
        "wrong audience": es256({**claims, "aud": "elsewhere"}),
        "no audience": es256({k: v for k, v in claims.items() if k != "aud"}),
        "wrong key": es256(claims, other_key),
        "alg none": f"{_segment({'alg': 'none', 'kid': 'local-1'})}.{_segment(claims)}.",
        "tampered": f"{header}.{widened}.{signature}",
        "hs256 with the public key": _hs256(claims, public_pem),
        "not a jwt": "not-a-token",
    }


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """Algorithm confusion: HMAC keyed with the published public key."""
    header = _segment({"alg": "HS256", "typ": "JWT", "kid": "local-1"})
    body = _segment(claims)
    mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    "kind",
    [
        "expired",
        "not yet valid",
        "wrong audience",
        "no audience",
        "wrong key",
        "alg none",
        "tampered",
        "hs256 with the public key",
        "not a jwt",
    ],
)
async def test_an_invalid_token_is_unauthenticated(
    pool_address: str, two_companies: tuple[str, str], kind: str
) -> None:
    a, _ = two_companies
    token = bad_tokens(a)[kind]
    code, reason, _ = await refused(pool_address, a, test_tls.bearer(token))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED_CALLER")


async def test_an_invalid_token_is_refused_for_callers_that_need_none(
    pool_address: str, two_companies: tuple[str, str]
) -> None:
    """A token is optional for the operator, but one it sends is checked all the same."""
    a, _ = two_companies
    async with test_tls.channel(pool_address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await pool_pb2_grpc.PoolServiceStub(channel).ListUnits(
                ppb.ListUnitsRequest(company_id=a),
                timeout=5,
                metadata=test_tls.bearer(bad_tokens(a)["expired"]),
            )
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_peers_carry_the_caller_s_token_on() -> None:
    """While a call with a token is served, the calls it makes to peers send that token."""
    seen: list[tuple[tuple[str, str], ...]] = []

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        seen.append(tuple((k, v) for k, v in context.invocation_metadata() if k == "authorization"))
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        channel = peer.open_channel(f"127.0.0.1:{port}", [], peer.PeerSettings())
        echo_call = channel.unary_unary("/test.Echo/Echo")
        await echo_call(b"outside a call", timeout=5)
        token = Token("header.claims.signature", "admin", frozenset({"a"}), time.time() + 60)
        reset = authz._token.set(token)
        try:
            await echo_call(b"within a call", timeout=5)
        finally:
            authz._token.reset(reset)
        await channel.close()
    finally:
        await server.stop(0)
    assert seen == [(), (("authorization", "Bearer header.claims.signature"),)]


async def test_health_and_reflection_on_the_tls_port_pass_the_policy(
    database_url: str, tmp_path: Path
) -> None:
    """The server's own services are checked against the policy like ours: an identity a
    policy does not name is refused them, one it allows is served."""
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[caller]]\nidentities = ["spiffe://licensing/operator/*"]\nmethods = ["*"]\n'
    )
    async with running_pool(database_url, sweep_interval_seconds=3600, policy_file=str(policy)) as (
        app,
        _,
    ):
        address = f"127.0.0.1:{app.port}"
        async with test_tls.channel(address) as channel:
            assert await health(channel) == health_pb2.HealthCheckResponse.SERVING
        async with test_tls.channel(address, "rating") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health(channel)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert reason_of(refused.value) == "CALLER_NOT_ALLOWED"
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            listing = reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in listing:
                    pass
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
