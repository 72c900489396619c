"""What several use-case families need: the office's active plan, and the request_ids of
pool calls made on behalf of a billing request."""

from __future__ import annotations

import hashlib
import uuid

from services.billing.domain import errors
from services.billing.domain.model import Plan
from services.billing.unit_of_work import Tx


def derived_request_id(*parts: object) -> str:
    """A deterministic request_id for a pool call made on behalf of a billing request, so
    a retry of the billing request replays the pool call instead of repeating it."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
    return f"billing-{digest[:48]}"


async def active_plan(tx: Tx, company_id: uuid.UUID, office_id: uuid.UUID) -> Plan:
    """The office's active plan; OFFICE_NOT_FOUND for an office of another company,
    NO_ACTIVE_PLAN for one without an active plan."""
    plan = await tx.plans.active(company_id, office_id)
    if plan is not None:
        return plan
    owner = await tx.plans.office_owner(office_id)
    if owner is not None and owner != company_id:
        raise errors.office_not_found(office_id)
    raise errors.no_active_plan(office_id)
