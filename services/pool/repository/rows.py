"""Rows of the pool schema as domain objects, and the columns they are read from."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import asyncpg

from libs.common.rows import from_row
from services.pool.domain.model import (
    Assignee,
    Hold,
    HoldState,
    Office,
    PassedOver,
    PassOverReason,
    PlanKind,
    Receipt,
    Source,
    SourceTake,
    Unit,
    UnitCount,
    UnitState,
)

UNIT_COLUMNS = """unit_id, company_id, office_id, currency, license_type, state, assignee_kind,
    assignee_id, returned_at, claimable_at, hold_id, held_from, created_at, updated_at"""
# The same, of the table an UPDATE ... FROM names `u`.
UPDATED_UNIT_COLUMNS = ", ".join("u." + c.strip() for c in UNIT_COLUMNS.split(","))
HOLD_COLUMNS = """h.hold_id, h.company_id, h.office_id, h.currency, h.license_type, h.state,
    h.expires_at, h.receipt_id, h.created_at, h.resolved_at, h.unit_ids"""
OFFICE_COLUMNS = "company_id, office_id, currency, plan_kind, is_primary, display_name, created_at"
RECEIPT_COLUMNS = """receipt_id, company_id, office_id, currency, license_type, requested,
    taken, shortfall, passed_over, hold_id, created_at"""


def to_unit(row: asyncpg.Record) -> Unit:
    kind = row["assignee_kind"]
    return from_row(
        Unit,
        row,
        state=UnitState(row["state"]),
        assignee=Assignee(kind, row["assignee_id"] or "") if kind else None,
        held_from=UnitState(row["held_from"]) if row["held_from"] else None,
    )


def to_unit_count(row: asyncpg.Record) -> UnitCount:
    """A row of counts by office, currency, type, state and held-from state (`n`)."""
    return UnitCount(
        row["office_id"],
        row["currency"],
        row["license_type"],
        UnitState(row["state"]),
        UnitState(row["held_from"]) if row["held_from"] else None,
        row["n"],
    )


def to_units_by_id(rows: list[asyncpg.Record]) -> list[Unit]:
    return sorted((to_unit(r) for r in rows), key=lambda u: u.unit_id)


def to_hold(row: asyncpg.Record) -> Hold:
    return from_row(Hold, row, state=HoldState(row["state"]), unit_ids=tuple(row["unit_ids"]))


def to_office(row: asyncpg.Record) -> Office:
    return from_row(Office, row, plan_kind=PlanKind(row["plan_kind"]), primary=row["is_primary"])


def to_receipt(row: asyncpg.Record) -> Receipt:
    return from_row(
        Receipt,
        row,
        taken=tuple(
            SourceTake(Source(t["source"]), tuple(uuid.UUID(u) for u in t["unit_ids"]))
            for t in row["taken"]
        ),
        shortfall=row["shortfall"],
        passed_over=tuple(
            PassedOver(
                PassOverReason(p["reason"]),
                p["quantity"],
                datetime.fromisoformat(p["earliest"]) if p.get("earliest") else None,
            )
            for p in row["passed_over"]
        ),
    )


def taken_json(receipt: Receipt) -> str:
    return json.dumps(
        [
            {"source": t.source.value, "unit_ids": [str(u) for u in t.unit_ids]}
            for t in receipt.taken
        ]
    )


def passed_over_json(receipt: Receipt) -> str:
    return json.dumps(
        [
            {
                "reason": p.reason.value,
                "quantity": p.quantity,
                "earliest": p.earliest_claimable_at.isoformat()
                if p.earliest_claimable_at
                else None,
            }
            for p in receipt.passed_over
        ]
    )


def uuid_array(ids: tuple[uuid.UUID, ...]) -> str:
    """A uuid[] literal, for an array of arrays passed through unnest as text."""
    return "{" + ",".join(str(u) for u in ids) + "}"
