"""The fuzzing harness can fail: it sees every kind of write, its invalid UTF-8 really is
invalid, and a service that answers badly or writes before refusing is reported."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import pytest_asyncio
from google.protobuf.message import DecodeError

from libs.common.database import create_pool
from licensing.billing.v1 import billing_pb2 as bpb
from licensing.credits.v1 import credits_pb2 as cpb
from licensing.pool.v1 import pool_pb2 as ppb
from tests.fuzz.campaign import Campaign, embedded_statuses
from tests.fuzz.cases import CaseMaker, slots
from tests.fuzz.corpus import Corpus
from tests.fuzz.rpcs import every_rpc
from tests.fuzz.tables import TableWatch
from tests.support.database import fresh_database

pytestmark = pytest.mark.fuzz


@pytest_asyncio.fixture(loop_scope="session")
async def scratch(db_server: str) -> AsyncIterator[asyncpg.Pool]:
    """An empty database with one table, s.t."""
    async with fresh_database(db_server) as url:
        db = await create_pool(url, 2)
        await db.execute("CREATE SCHEMA s; CREATE TABLE s.t (id int PRIMARY KEY, v text)")
        yield db
        await db.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_table_watch_sees_inserts_updates_and_deletes(scratch: asyncpg.Pool) -> None:
    watch = await TableWatch.of(scratch)
    assert watch.tables == ["s.t"]
    now, changes = await watch.changes_since(await watch.snapshot())
    assert changes == []
    await scratch.execute("INSERT INTO s.t VALUES (1, 'a'), (2, 'b')")
    now, changes = await watch.changes_since(now)
    assert changes == ["s.t: 0 -> 2 rows"]
    await scratch.execute("UPDATE s.t SET v = 'c' WHERE id = 1")
    now, changes = await watch.changes_since(now)
    assert changes == ["s.t: 1 rows written"]
    await scratch.execute("DELETE FROM s.t WHERE id = 2")
    now, changes = await watch.changes_since(now)
    assert changes == ["s.t: 2 -> 1 rows"]


def test_every_service_and_nested_field_is_found() -> None:
    services = {rpc.service.full_name for rpc in every_rpc()}
    assert {"licensing.pool.v1.PoolService", "licensing.billing.v1.BillingService"} <= services
    assert {"licensing.credits.v1.CreditsService"} <= services
    assert {"licensing.provisioning.v1.ProvisioningService"} <= services
    request = bpb.CreatePlanRequest(plan=bpb.Plan(prices=[bpb.Price()]))
    names = {slot.name for slot in slots(request)}
    assert {"plan.start_time", "plan.prices.unit_price.amount_minor"} <= names


def test_statuses_inside_an_answer_are_found() -> None:
    answer = cpb.BatchRecordUsageResponse(
        results=[
            cpb.RecordResult(request_id="a", usage=cpb.UsageRecord(usage_id="u")),
            cpb.RecordResult(request_id="b", error=cpb.RecordError(code=13, message="boom")),
            cpb.RecordResult(request_id="c", error=cpb.RecordError(code=3, reason="BAD")),
        ]
    )
    assert list(embedded_statuses(answer)) == [
        (grpc.StatusCode.INTERNAL, "", "boom"),
        (grpc.StatusCode.INVALID_ARGUMENT, "BAD", ""),
    ]


def test_invalid_utf8_cases_cannot_be_decoded() -> None:
    request_type = bpb.CreatePlanRequest.DESCRIPTOR
    maker = CaseMaker(request_type, Corpus(), random.Random(7), [ppb.GetOfficeRequest.DESCRIPTOR])
    for number in range(50):
        case = maker.build(number, "invalid-utf8")
        bpb.CreatePlanRequest.FromString(case.request.SerializeToString())
        with pytest.raises(DecodeError):
            bpb.CreatePlanRequest.FromString(case.payload)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_badly_behaved_service_is_reported(scratch: asyncpg.Pool) -> None:
    """GetOffice that decodes requests the default way (so undecodable bytes end UNKNOWN),
    and that writes a row before refusing a request for the company it knows."""
    known = "00000000-0000-4000-8000-000000000001"

    async def get_office(request: ppb.GetOfficeRequest, context: grpc.aio.ServicerContext) -> None:
        if request.company_id == known:
            await scratch.execute(
                "INSERT INTO s.t VALUES ((SELECT coalesce(max(id), 0) + 1 FROM s.t), 'x')"
            )
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such office")

    handler = grpc.unary_unary_rpc_method_handler(
        get_office,
        request_deserializer=ppb.GetOfficeRequest.FromString,
        response_serializer=ppb.GetOfficeResponse.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "licensing.pool.v1.PoolService", {"GetOffice": handler}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    corpus = Corpus()
    corpus.learn(ppb.GetOfficeRequest(company_id=known, office_id=known))
    (rpc,) = [r for r in every_rpc() if r.id == "PoolService.GetOffice"]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            campaign = Campaign(
                rpc,
                channel,
                await TableWatch.of(scratch),
                corpus,
                seed=1,
                examples=25,
                other_types=[ppb.AddUnitsRequest.DESCRIPTOR],
            )
            findings = await campaign.run()
    finally:
        await server.stop(0)
    problems = {f.problem for f in findings}
    assert "UNKNOWN" in problems
    assert any("invalid-utf8" in f.case.attribution for f in findings if f.problem == "UNKNOWN")
    wrote = [f for f in findings if f.problem == "rejected but wrote rows"]
    assert wrote
    assert all("s.t: " in f.message for f in wrote)
    assert all(f.case.request.company_id == known for f in wrote if not f.case.wire)
