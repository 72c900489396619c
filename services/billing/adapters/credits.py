"""The credits service, as billing calls it: one typed gateway on the shared peer client
(`libs/common/peer.py`, as the pool gateway: deadlines, retries only for calls that carry
a request_id, the credits' reasons passed on, CREDITS_UNAVAILABLE when it cannot be
reached). Billing keeps each office's credit account in step with its plan, and reads
the credit overage an invoice bills. `Credits` is what the use cases need of it (tests
give them an in-memory one, `tests/fakes/billing.py`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol

from google.protobuf.field_mask_pb2 import FieldMask

from libs.common.peer import Gateway
from libs.common.reasons import Reason
from libs.common.timestamps import timestamp
from licensing.credits.v1 import credits_pb2 as pb
from licensing.credits.v1 import credits_pb2_grpc
from services.billing.domain.model import PeriodOverage, Plan

SERVICE = pb.DESCRIPTOR.services_by_name["CreditsService"]
# What a plan decides of an office's credit account; its overage policy is the operator's.
PLAN_FIELDS = ("currency", "primary", "allowance_minor", "period_anchor_time")


class Credits(Protocol):
    """What billing asks of the credits service. Calls with a request_id replay."""

    async def put_account(self, request_id: str, plan: Plan) -> None:
        """Keeps the office's credit account in step with the plan: its currency, primary
        flag, allowance (none once the plan is deactivated) and period anchor (the plan's
        start); the account's overage policy stays as it is."""
        ...

    async def period_overage(
        self, company_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[PeriodOverage]:
        """Each office's overage of its credit periods that start in [start, end)."""
        ...


def plan_allowance(plan: Plan) -> int:
    """The included allowance a plan gives its office: none once it is deactivated."""
    return plan.credit_allowance if plan.active else 0


class CreditsGateway(Gateway[credits_pb2_grpc.CreditsServiceStub]):
    """`Credits` over gRPC: licensing.credits.v1.CreditsService."""

    stub_type = credits_pb2_grpc.CreditsServiceStub
    service = SERVICE
    unavailable = Reason.CREDITS_UNAVAILABLE

    async def put_account(self, request_id: str, plan: Plan) -> None:
        account = pb.Account(
            company_id=str(plan.company_id),
            office_id=str(plan.office_id),
            currency=plan.currency,
            primary=plan.primary,
            allowance_minor=plan_allowance(plan),
            period_anchor_time=timestamp(plan.start_at),
        )
        await self._peer.call(
            self._stub.PutAccount,
            pb.PutAccountRequest(
                request_id=request_id,
                account=account,
                update_mask=FieldMask(paths=list(PLAN_FIELDS)),
            ),
        )

    async def period_overage(
        self, company_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[PeriodOverage]:
        response: pb.GetPeriodOverageResponse = await self._peer.call(
            self._stub.GetPeriodOverage,
            pb.GetPeriodOverageRequest(
                company_id=str(company_id), start_time=timestamp(start), end_time=timestamp(end)
            ),
        )
        return [
            PeriodOverage(
                office_id=uuid.UUID(o.office_id),
                currency=o.currency,
                period_start=o.period_start_time.ToDatetime(tzinfo=UTC),
                period_end=o.period_end_time.ToDatetime(tzinfo=UTC),
                amount=o.overage_minor,
            )
            for o in response.overages
        ]
