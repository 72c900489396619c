"""Bad input gets INVALID_ARGUMENT with a reason, and nothing is written."""

import uuid

import asyncpg
import grpc
import pytest

from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from tests.support.pool import Company, reason_of, rid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def table_counts(db: asyncpg.Pool) -> dict[str, int]:
    tables = ("offices", "units", "free_units", "holds", "receipts", "pools", "idempotency_keys")
    return {t: await db.fetchval(f"SELECT count(*) FROM pool.{t}") for t in tables}


async def test_bad_requests_are_refused_with_reasons(
    stub: pool_pb2_grpc.PoolServiceStub, company: Company, db: asyncpg.Pool
) -> None:
    office = await company.office("a", "USD")
    await company.add("a", "connect", 2)
    c = company.company_id

    def acquire(**fields: object) -> pb.AcquireRequest:
        base: dict[str, object] = {
            "request_id": rid(),
            "company_id": c,
            "office_id": office,
            "license_type": "connect",
            "quantity": 1,
        }
        base.update(fields)
        return pb.AcquireRequest(**base)  # type: ignore[arg-type]

    cases = [
        (stub.Acquire, acquire(quantity=0), "INVALID_QUANTITY"),
        (stub.Acquire, acquire(quantity=-5), "INVALID_QUANTITY"),
        (stub.Acquire, acquire(quantity=2_000_000_000), "INVALID_QUANTITY"),
        (stub.Acquire, acquire(license_type="platinum"), "UNKNOWN_LICENSE_TYPE"),
        (stub.Acquire, acquire(license_type=""), "MISSING_FIELD"),
        (stub.Acquire, acquire(office_id="not-a-uuid"), "MALFORMED_ID"),
        (stub.Acquire, acquire(company_id=""), "MISSING_FIELD"),
        (stub.Acquire, acquire(request_id=""), "INVALID_FIELD"),
        (stub.Acquire, acquire(request_id="x" * 500), "INVALID_FIELD"),
        (
            stub.Acquire,
            acquire(quantity=2, assignees=[pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id="u")]),
            "ASSIGNEE_COUNT_MISMATCH",
        ),
        (stub.Acquire, acquire(assignees=[pb.Assignee(id="u")]), "INVALID_FIELD"),
        (stub.Acquire, acquire(sources=[7]), "INVALID_FIELD"),
        (
            stub.AddUnits,
            pb.AddUnitsRequest(
                request_id=rid(),
                company_id=c,
                office_id=office,
                license_type="connect",
                quantity=10_001,
            ),
            "INVALID_QUANTITY",
        ),
        (
            stub.EnablePool,
            pb.EnablePoolRequest(request_id=rid(), company_id=c, currency="CHF"),
            "UNSUPPORTED_CURRENCY",
        ),
        (
            stub.EnablePool,
            pb.EnablePoolRequest(request_id=rid(), company_id=c, currency="usd"),
            "UNSUPPORTED_CURRENCY",
        ),
        (stub.EnablePool, pb.EnablePoolRequest(request_id=rid(), company_id=c), "MISSING_FIELD"),
        (
            stub.PutOffice,
            pb.PutOfficeRequest(
                request_id=rid(),
                office=pb.Office(
                    company_id=c,
                    office_id=str(uuid.uuid4()),
                    currency="BTC",
                    plan_kind=pb.PLAN_KIND_BUNDLE,
                ),
            ),
            "UNSUPPORTED_CURRENCY",
        ),
        (
            stub.PutOffice,
            pb.PutOfficeRequest(
                request_id=rid(),
                office=pb.Office(company_id=c, office_id=str(uuid.uuid4()), currency="USD"),
            ),
            "INVALID_FIELD",
        ),
        (stub.PutOffice, pb.PutOfficeRequest(request_id=rid()), "MISSING_FIELD"),
        (
            stub.Reserve,
            pb.ReserveRequest(
                request_id=rid(),
                company_id=c,
                office_id=office,
                license_type="connect",
                quantity=1,
                ttl_seconds=901,
            ),
            "INVALID_TTL",
        ),
        (
            stub.Commit,
            pb.CommitRequest(request_id=rid(), company_id=c, hold_id="42"),
            "MALFORMED_ID",
        ),
        (stub.ReturnUnits, pb.ReturnUnitsRequest(request_id=rid(), company_id=c), "MISSING_FIELD"),
        (stub.ListUnits, pb.ListUnitsRequest(company_id=c, page_token="%%%"), "INVALID_FIELD"),
        (stub.ListUnits, pb.ListUnitsRequest(company_id=c, page_size=-1), "INVALID_FIELD"),
        (
            stub.GetSnapshot,
            pb.GetSnapshotRequest(company_id=c, currency="XXX"),
            "UNSUPPORTED_CURRENCY",
        ),
    ]
    before = await table_counts(db)
    for call, request, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, caught.value)
        assert reason_of(caught.value) == reason, request
        assert caught.value.details()
    assert await table_counts(db) == before


async def test_changing_currency_of_an_office_with_units_is_refused(company: Company) -> None:
    office = await company.office("a", "USD")
    await company.add("a", "connect", 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.PutOffice(
            pb.PutOfficeRequest(
                request_id=rid(),
                office=pb.Office(
                    company_id=company.company_id,
                    office_id=office,
                    currency="EUR",
                    plan_kind=pb.PLAN_KIND_BUNDLE,
                ),
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(caught.value) == "OFFICE_HAS_UNITS"
    units = await company.units()
    assert [u.currency for u in units] == ["USD"]


async def test_internal_errors_do_not_leak(
    company: Company, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.pool.repository.pools import Pools

    async def broken(*args: object) -> None:
        raise RuntimeError("secret connection string postgres://admin:hunter2@db")

    monkeypatch.setattr(Pools, "get", broken)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await company.stub.GetPool(pb.GetPoolRequest(company_id=company.company_id, currency="USD"))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in (caught.value.details() or "")
    assert caught.value.details() == "internal error"
