"""Every request is decoded and checked once, before any handler: bytes that do not
parse and values PostgreSQL cannot store are INVALID_ARGUMENT, and nothing is written."""

from __future__ import annotations

import logging

import asyncpg
import grpc
import pytest

from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.app import PoolApp
from tests.integration.pool.test_validation import table_counts
from tests.support import tls
from tests.support.pool import Company, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")

ACQUIRE = "/licensing.pool.v1.PoolService/Acquire"


async def test_a_nul_in_any_string_is_refused_naming_the_field(
    stub: pool_pb2_grpc.PoolServiceStub, company: Company, db: asyncpg.Pool
) -> None:
    office = await company.office("a", "USD")
    await company.add("a", "connect", 2)
    before = await table_counts(db)
    for fields, field in (
        ({"request_id": "r\x00"}, "request_id"),
        ({"assignees": [pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id="u\x00")]}, "assignees[0].id"),
    ):
        request = pb.AcquireRequest(
            **{  # type: ignore[arg-type]
                "request_id": rid(),
                "company_id": company.company_id,
                "office_id": office,
                "license_type": "connect",
                "quantity": 1,
                **fields,
            }
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Acquire(request)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert reason_of(raised.value) == "INVALID_CHARACTERS"
        assert field in (raised.value.details() or "")
    assert await table_counts(db) == before


async def test_undecodable_bytes_are_invalid_argument_and_logged_once(
    pool_service: tuple[PoolApp, pool_pb2_grpc.PoolServiceStub],
    caplog: pytest.LogCaptureFixture,
    db: asyncpg.Pool,
) -> None:
    app, _ = pool_service
    before = await table_counts(db)
    async with tls.channel(f"127.0.0.1:{app.port}") as channel:
        raw = channel.unary_unary(ACQUIRE)  # no serializers: the bytes go as they are
        with caplog.at_level(logging.WARNING):
            for garbage in (b"\x0a\x02\xff\xfe", b"\xff" * 64, b"\x12\x7fshort") * 10:
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await raw(garbage)
                assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert reason_of(raised.value) == "MALFORMED_REQUEST"
                assert raised.value.details() == "the request could not be decoded"
    lines = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) <= 1
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
    assert await table_counts(db) == before
