"""The credits service's domain events (`WatchEvents`): their types and what each tells.

A use case publishes in its own transaction, with no I/O: `tx.events.publish(company_id,
TYPE, data)` (see `libs.common.outbox`); the facts are plain JSON, ids and amounts as
strings. A new event is a new type here (in `TYPES`) and a builder of its facts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from services.credits.domain.model import CreditAlert, Grant, Pooling, UsageRecord

CREDITS_GRANTED = "credits.granted"
USAGE_RECORDED = "credits.usage.recorded"
POOLING_CHANGED = "credits.pooling.changed"
THRESHOLD_CROSSED = "credits.threshold.crossed"

TYPES = frozenset({CREDITS_GRANTED, USAGE_RECORDED, POOLING_CHANGED, THRESHOLD_CROSSED})


def granted(grant: Grant, balance: int) -> dict[str, Any]:
    return {
        "grant_id": str(grant.grant_id),
        "target": grant.target.value,
        "office_id": str(grant.office_id) if grant.office_id else "",
        "currency": grant.currency,
        "amount": str(grant.amount),
        "balance": str(balance),
    }


def usage_recorded(record: UsageRecord) -> dict[str, Any]:
    return {
        "usage_id": str(record.usage_id),
        "request_id": record.request_id,
        "office_id": str(record.office_id),
        "kind": record.kind.value,
        "currency": record.currency,
        "amount": str(record.amount),
        "occurred_at": record.occurred_at.isoformat(),
        "split": {part: str(value) for part, value in dataclasses.asdict(record.split).items()},
    }


def pooling_changed(pooling: Pooling) -> dict[str, Any]:
    return {"currency": pooling.currency, "enabled": pooling.enabled}


def threshold_crossed(alert: CreditAlert) -> dict[str, Any]:
    """One alert: the shared balance fell to or below a threshold (once per period)."""
    return {
        "alert_id": str(alert.alert_id),
        "currency": alert.currency,
        "threshold_kind": alert.threshold.kind.value,
        "threshold_value": str(alert.threshold.value),
        "level": str(alert.level),
        "balance": str(alert.balance),
        "period_start": alert.period.start.isoformat(),
        "usage_id": str(alert.usage_id),
        "office_id": str(alert.office_id),
    }
