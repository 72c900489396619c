"""The pool service, as provisioning uses it: only through its protobuf contract.

Every call carries a deadline and the trace context (OpenTelemetry client interceptors
on the channel). Calls that carry a request_id are retried on UNAVAILABLE and ABORTED
(the pool replays a request it already did); reads are not retried. Pool errors become
our domain errors with the pool's ErrorInfo reason and metadata, so that, e.g.,
NO_LICENSE_AVAILABLE reaches our caller with its shortfall.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias, TypeVar

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from libs.common.error_status import error_info, other_details
from libs.common.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from libs.common.peer import dial
from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")
AssigneeKind: TypeAlias = pb.AssigneeKind.ValueType
USER: AssigneeKind = pb.ASSIGNEE_KIND_USER
BASE_LICENSE: AssigneeKind = pb.ASSIGNEE_KIND_BASE_LICENSE
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)
_ERRORS: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}
_MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PoolUnit:
    unit_id: uuid.UUID
    license_type: str
    office_id: uuid.UUID
    state: str  # "SPARE", "ASSIGNED", ... (pool UnitState without its prefix)
    assignee_id: str


@dataclass(frozen=True, slots=True)
class Reserved:
    hold_id: uuid.UUID | None
    unit_ids: tuple[uuid.UUID, ...]  # sorted: the order Commit pairs them with assignees
    shortfall: int


@dataclass(frozen=True, slots=True)
class Availability:
    """Units an office could get now, per license type (for import quotes)."""

    own_spare: dict[str, int]
    own_returns_in_grace: dict[str, int]
    pool_claimable: dict[str, int]


def _unit(message: pb.Unit) -> PoolUnit:
    return PoolUnit(
        unit_id=uuid.UUID(message.unit_id),
        license_type=message.license_type,
        office_id=uuid.UUID(message.office_id),
        state=pb.UnitState.Name(message.state).removeprefix("UNIT_STATE_"),
        assignee_id=message.assignee.id,
    )


def domain_error(error: grpc.aio.AioRpcError) -> DomainError:
    """The domain error for a failed pool call, keeping the pool's reason."""
    info = error_info(error)
    kind = _ERRORS.get(error.code())
    if kind is None or info is None:
        log.warning("pool call failed: %s %s", error.code(), error.details())
        return Unavailable(
            "POOL_UNAVAILABLE", "the pool service did not answer; retry with the same request_id"
        )
    # The pool's details (e.g. the allocation receipt: what was passed over and why) reach
    # our callers as they came.
    return kind(
        info.reason, error.details() or info.reason, dict(info.metadata), other_details(error)
    )


class PoolClient:
    """A channel to the pool service and the calls provisioning makes."""

    def __init__(
        self,
        address: str,
        timeout: float,
        attempts: int,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._channel = dial(
            address,
            credentials,
            interceptors=aio_client_interceptors(),  # type: ignore[no-untyped-call]
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                ("grpc.max_send_message_length", _MAX_MESSAGE),
            ],
        )
        self._stub = pool_pb2_grpc.PoolServiceStub(self._channel)
        self._timeout = timeout
        self._attempts = attempts

    async def close(self) -> None:
        await self._channel.close()

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            raise domain_error(error) from None

    async def _write(self, call: Callable[[], Awaitable[T]]) -> T:
        """A call that carries a request_id: safe to repeat, so retried."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
            retry=retry_if_exception(
                lambda e: isinstance(e, grpc.aio.AioRpcError) and e.code() in _RETRYABLE
            ),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await call()
        except grpc.aio.AioRpcError as error:
            raise domain_error(error) from None
        raise AssertionError("unreachable")

    # --- mutations (carry a request_id; retried) -------------------------------------

    async def acquire(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        assignees: Sequence[tuple[AssigneeKind, str]],
    ) -> list[PoolUnit]:
        request = pb.AcquireRequest(
            request_id=request_id,
            company_id=str(company_id),
            office_id=str(office_id),
            license_type=license_type,
            quantity=len(assignees),
            assignees=[pb.Assignee(kind=k, id=i) for k, i in assignees],
        )
        response: pb.AcquireResponse = await self._write(
            lambda: self._stub.Acquire(request, timeout=self._timeout)
        )
        return [_unit(u) for u in response.units]

    async def reserve(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        ttl_seconds: int,
        allow_partial: bool = True,
    ) -> Reserved:
        """Holds the units; with allow_partial, what is available, the rest being the
        shortfall (otherwise NO_LICENSE_AVAILABLE unless all can be held)."""
        request = pb.ReserveRequest(
            request_id=request_id,
            company_id=str(company_id),
            office_id=str(office_id),
            license_type=license_type,
            quantity=quantity,
            ttl_seconds=ttl_seconds,
            allow_partial=allow_partial,
        )
        response: pb.ReserveResponse = await self._write(
            lambda: self._stub.Reserve(request, timeout=self._timeout)
        )
        hold_id = uuid.UUID(response.hold.hold_id) if response.hold.hold_id else None
        units = tuple(sorted(uuid.UUID(u) for u in response.hold.unit_ids))
        return Reserved(hold_id, units, response.receipt.shortfall)

    async def commit(
        self,
        request_id: str,
        company_id: uuid.UUID,
        hold_id: uuid.UUID,
        assignees: Sequence[tuple[AssigneeKind, str]],
    ) -> list[PoolUnit]:
        """Held units become ASSIGNED: assignees pair with the hold's sorted unit ids."""
        request = pb.CommitRequest(
            request_id=request_id,
            company_id=str(company_id),
            hold_id=str(hold_id),
            assignees=[pb.Assignee(kind=k, id=i) for k, i in assignees],
        )
        response: pb.CommitResponse = await self._write(
            lambda: self._stub.Commit(request, timeout=self._timeout)
        )
        return [_unit(u) for u in response.units]

    async def release(self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID) -> None:
        request = pb.ReleaseRequest(
            request_id=request_id, company_id=str(company_id), hold_id=str(hold_id)
        )
        await self._write(lambda: self._stub.Release(request, timeout=self._timeout))

    async def return_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]
    ) -> list[PoolUnit]:
        if not unit_ids:
            return []
        request = pb.ReturnUnitsRequest(
            request_id=request_id, company_id=str(company_id), unit_ids=[str(u) for u in unit_ids]
        )
        response: pb.ReturnUnitsResponse = await self._write(
            lambda: self._stub.ReturnUnits(request, timeout=self._timeout)
        )
        return [_unit(u) for u in response.units]

    async def reassign_units(
        self,
        request_id: str,
        company_id: uuid.UUID,
        reassignments: Sequence[tuple[uuid.UUID, AssigneeKind, str]],
    ) -> list[PoolUnit]:
        request = pb.ReassignUnitsRequest(
            request_id=request_id,
            company_id=str(company_id),
            reassignments=[
                pb.Reassignment(unit_id=str(u), assignee=pb.Assignee(kind=k, id=i))
                for u, k, i in reassignments
            ],
        )
        response: pb.ReassignUnitsResponse = await self._write(
            lambda: self._stub.ReassignUnits(request, timeout=self._timeout)
        )
        return [_unit(u) for u in response.units]

    async def terminate_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]
    ) -> list[PoolUnit]:
        request = pb.TerminateUnitsRequest(
            request_id=request_id, company_id=str(company_id), unit_ids=[str(u) for u in unit_ids]
        )
        response: pb.TerminateUnitsResponse = await self._write(
            lambda: self._stub.TerminateUnits(request, timeout=self._timeout)
        )
        return [_unit(u) for u in response.units]

    # --- reads (not retried) ---------------------------------------------------------

    async def get_unit(self, company_id: uuid.UUID, unit_id: uuid.UUID) -> PoolUnit:
        request = pb.GetUnitRequest(company_id=str(company_id), unit_id=str(unit_id))
        response: pb.GetUnitResponse = await self._read(
            lambda: self._stub.GetUnit(request, timeout=self._timeout)
        )
        return _unit(response.unit)

    async def hold_state(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> str:
        """ "PENDING", "COMMITTED", "RELEASED" or "EXPIRED"."""
        request = pb.GetHoldRequest(company_id=str(company_id), hold_id=str(hold_id))
        response: pb.GetHoldResponse = await self._read(
            lambda: self._stub.GetHold(request, timeout=self._timeout)
        )
        return pb.HoldState.Name(response.hold.state).removeprefix("HOLD_STATE_")

    async def office_currency(self, company_id: uuid.UUID, office_id: uuid.UUID) -> str:
        request = pb.GetOfficeRequest(company_id=str(company_id), office_id=str(office_id))
        response: pb.GetOfficeResponse = await self._read(
            lambda: self._stub.GetOffice(request, timeout=self._timeout)
        )
        return response.office.currency

    async def availability(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_types: Sequence[str]
    ) -> Availability:
        """What the office could allocate now, per type: its spare units, its own
        returns still in grace, and the claimable units of the company pool."""
        currency = await self.office_currency(company_id, office_id)
        snapshot: pb.GetSnapshotResponse = await self._read(
            lambda: self._stub.GetSnapshot(
                pb.GetSnapshotRequest(company_id=str(company_id), currency=currency),
                timeout=self._timeout,
            )
        )
        pool: pb.GetPoolResponse = await self._read(
            lambda: self._stub.GetPool(
                pb.GetPoolRequest(company_id=str(company_id), currency=currency),
                timeout=self._timeout,
            )
        )
        wanted = set(license_types)
        spare = {
            line.license_type: int(line.spare)
            for line in snapshot.office_lines
            if line.office_id == str(office_id) and line.license_type in wanted
        }
        claimable: dict[str, int] = {}
        in_grace: dict[str, int] = {}
        if pool.pool.enabled:
            claimable = {c.license_type: c.claimable for c in pool.contents}
            now = snapshot.snapshot_time.ToDatetime(tzinfo=UTC)
            for code in wanted:
                in_grace[code] = await self._own_in_grace(company_id, office_id, code, now)
        return Availability(spare, in_grace, claimable)

    async def _own_in_grace(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_type: str, now: datetime
    ) -> int:
        count, token = 0, ""
        while True:
            request = pb.ListUnitsRequest(
                company_id=str(company_id),
                office_id=str(office_id),
                license_type=license_type,
                state=pb.UNIT_STATE_POOLED,
                page_size=1000,
                page_token=token,
            )
            page: pb.ListUnitsResponse = await self._read(
                lambda r=request: self._stub.ListUnits(r, timeout=self._timeout)  # type: ignore[misc]
            )
            count += sum(1 for u in page.units if u.claimable_at.ToDatetime(tzinfo=UTC) > now)
            token = page.next_page_token
            if not token:
                return count
