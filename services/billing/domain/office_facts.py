"""What the peers know of an office, as billing keeps it (docs/product.md, "Companies,
offices and plans"): the facts of the office's plan, told to the pool first and then to
the credits service. When credits refuses for good after the pool took the new facts,
the pool is put back to the facts billing still has; a passing failure (an outage) is
not undone, since the caller's retry replays the pool call and goes on."""

from __future__ import annotations

from dataclasses import replace

from libs.common.errors import ErrorKind
from services.billing.domain.model import Plan
from services.billing.domain.purchase import RETRIABLE_FAILURES

PASSING = RETRIABLE_FAILURES | {ErrorKind.RESOURCE_EXHAUSTED}


def undoes(kind: ErrorKind) -> bool:
    """Whether a refusal of the credits service puts the pool's facts back."""
    return kind not in PASSING


def facts_before(plan: Plan, previous: Plan | None) -> Plan:
    """The plan whose facts the pool had before `plan` was told: the plan as it was (for
    a change), the office's latest plan (for a new one), else none (plan kind NONE)."""
    return previous if previous is not None else replace(plan, active=False)
