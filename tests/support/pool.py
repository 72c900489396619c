"""Helpers for talking to the pool service in tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from grpc_status import rpc_status

from libs.common.clock import Clock
from libs.common.error_status import error_info
from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from services.pool.app import PoolApp, start
from services.pool.config import PoolSettings
from tests.support import tls


def rid() -> str:
    """A fresh request_id."""
    return str(uuid.uuid4())


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call ("" for a status without one)."""
    info = error_info(error)
    return info.reason if info else ""


def details_of(error: grpc.aio.AioRpcError, message_type: type) -> list:  # type: ignore[type-arg]
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found = []
    for detail in status.details if status else []:
        if detail.Is(message_type.DESCRIPTOR):
            message = message_type()
            detail.Unpack(message)
            found.append(message)
    return found


@asynccontextmanager
async def running_pool(
    database_url: str, clock: Clock | None = None, **overrides: object
) -> AsyncIterator[tuple[PoolApp, pool_pb2_grpc.PoolServiceStub]]:
    settings = PoolSettings(database_url=database_url, port=0, **overrides)  # type: ignore[arg-type]
    app = await start(settings, clock)
    channel = tls.channel(f"127.0.0.1:{app.port}")
    try:
        yield app, pool_pb2_grpc.PoolServiceStub(channel)
    finally:
        await channel.close()
        await app.stop()


@dataclass
class Company:
    """A company set up through the API: its id and offices by name."""

    stub: pool_pb2_grpc.PoolServiceStub
    company_id: str
    offices: dict[str, str]

    async def office(
        self, name: str, currency: str, kind: int = pb.PLAN_KIND_BUNDLE, primary: bool = False
    ) -> str:
        office_id = str(uuid.uuid4())
        await self.stub.PutOffice(
            pb.PutOfficeRequest(
                request_id=rid(),
                office=pb.Office(
                    company_id=self.company_id,
                    office_id=office_id,
                    currency=currency,
                    plan_kind=kind,  # type: ignore[arg-type]
                    primary=primary,
                ),
            )
        )
        self.offices[name] = office_id
        return office_id

    async def add(self, office: str, license_type: str, quantity: int) -> list[str]:
        response = await self.stub.AddUnits(
            pb.AddUnitsRequest(
                request_id=rid(),
                company_id=self.company_id,
                office_id=self.offices[office],
                license_type=license_type,
                quantity=quantity,
            )
        )
        return [u.unit_id for u in response.units]

    async def enable(self, currency: str) -> pb.EnablePoolResponse:
        response: pb.EnablePoolResponse = await self.stub.EnablePool(
            pb.EnablePoolRequest(request_id=rid(), company_id=self.company_id, currency=currency)
        )
        return response

    async def acquire(
        self,
        office: str,
        license_type: str,
        quantity: int = 1,
        request_id: str | None = None,
        assignees: Sequence[str] = (),
    ) -> pb.AcquireResponse:
        response: pb.AcquireResponse = await self.stub.Acquire(
            pb.AcquireRequest(
                request_id=request_id or rid(),
                company_id=self.company_id,
                office_id=self.offices[office],
                license_type=license_type,
                quantity=quantity,
                assignees=[pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id=a) for a in assignees],
            )
        )
        return response

    async def reserve(
        self,
        office: str,
        license_type: str,
        quantity: int = 1,
        request_id: str | None = None,
        **extra: object,
    ) -> pb.ReserveResponse:
        response: pb.ReserveResponse = await self.stub.Reserve(
            pb.ReserveRequest(
                request_id=request_id or rid(),
                company_id=self.company_id,
                office_id=self.offices[office],
                license_type=license_type,
                quantity=quantity,
                **extra,  # type: ignore[arg-type]
            )
        )
        return response

    async def give_back(self, unit_ids: Sequence[str]) -> pb.ReturnUnitsResponse:
        response: pb.ReturnUnitsResponse = await self.stub.ReturnUnits(
            pb.ReturnUnitsRequest(request_id=rid(), company_id=self.company_id, unit_ids=unit_ids)
        )
        return response

    async def units(self, **filters: object) -> list[pb.Unit]:
        found: list[pb.Unit] = []
        token = ""
        while True:
            page = await self.stub.ListUnits(
                pb.ListUnitsRequest(company_id=self.company_id, page_token=token, **filters)  # type: ignore[arg-type]
            )
            found.extend(page.units)
            token = page.next_page_token
            if not token:
                return found


def new_company(stub: pool_pb2_grpc.PoolServiceStub) -> Company:
    return Company(stub, str(uuid.uuid4()), {})
