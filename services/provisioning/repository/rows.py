"""How provisioning's rows read and are written: column lists and record conversions."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from libs.common.rows import from_row
from services.provisioning.domain.model import (
    Addon,
    Failure,
    ImportJob,
    ImportStage,
    ImportState,
    License,
    Progress,
    QuoteLine,
    RowIssue,
    StoredImport,
    User,
)
from services.provisioning.domain.pool_operation import (
    Held,
    Plan,
    PoolOperation,
    Reservation,
    Step,
)

Conn: TypeAlias = asyncpg.Connection

USER_COLUMNS = """user_id, company_id, office_id, display_name, email, license_type,
    license_unit_id, created_at, updated_at"""
LICENSE_COLUMNS = """l.license_id, l.company_id, l.office_id, l.license_type, l.user_id,
    l.ext_key, l.number, l.created_at, l.updated_at,
    coalesce((SELECT jsonb_agg(jsonb_build_object('id', a.addon_id, 'type', a.license_type,
                                                  'at', a.created_at) ORDER BY a.license_type)
              FROM provisioning.addons a
              WHERE a.company_id = l.company_id AND a.license_id = l.license_id),
             '[]'::jsonb) AS addons"""
OPERATION_COLUMNS = """company_id, request_id, fingerprint, attempt, step, kind, office_id,
    plan, round, holds, response, lease_owner"""
IMPORT_COLUMNS = """company_id, import_id, office_id, fingerprint, state, stage, attempt,
    chunk_size, row_count, rows_reconfiguring, warnings, quote, units_total, units_reserved,
    units_committed, rows_applied, failure, created_at, updated_at"""


def to_user(row: asyncpg.Record) -> User:
    return User(**{k: row[k] for k in row.keys()})  # noqa: SIM118


def to_license(row: asyncpg.Record) -> License:
    addons = [
        Addon(uuid.UUID(a["id"]), a["type"], datetime.fromisoformat(a["at"])) for a in row["addons"]
    ]
    return from_row(License, row, addons=tuple(addons))


def _issues(items: Sequence[dict[str, Any]]) -> tuple[RowIssue, ...]:
    return tuple(RowIssue(**i) for i in items)


def issues_json(issues: Iterable[RowIssue]) -> list[dict[str, Any]]:
    return [
        {"row": i.row, "column": i.column, "reason": i.reason, "message": i.message} for i in issues
    ]


def quote_json(quote: Iterable[QuoteLine]) -> list[dict[str, Any]]:
    return [
        {
            "license_type": q.license_type,
            "needed": q.needed,
            "own_spare": q.own_spare,
            "own_returns_in_grace": q.own_returns_in_grace,
            "pool_claimable": q.pool_claimable,
        }
        for q in quote
    ]


def to_import(row: asyncpg.Record) -> StoredImport:
    failure = row["failure"]
    job = from_row(
        ImportJob,
        row,
        state=ImportState(row["state"]),
        stage=ImportStage(row["stage"]),
        errors=(),
        error_count=0,
        warnings=_issues(row["warnings"]),
        quote=tuple(QuoteLine(**q) for q in row["quote"]),
        progress=Progress(
            row["units_total"],
            row["units_reserved"],
            row["units_committed"],
            row["rows_applied"],
        ),
        failure=Failure(**failure) if failure else None,
    )
    return StoredImport(job, bytes(row["fingerprint"]), row["attempt"], row["chunk_size"])


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "reservations": [
            {
                "license_type": r.license_type,
                "assignees": [[kind, assignee] for kind, assignee in r.assignees],
                "purchase_if_needed": r.purchase_if_needed,
            }
            for r in plan.reservations
        ],
        "returns": [str(u) for u in plan.returns],
        "args": dict(plan.args),
    }


def holds_json(holds: Sequence[Held]) -> list[dict[str, Any]]:
    return [{"hold_id": str(h.hold_id), "unit_ids": [str(u) for u in h.unit_ids]} for h in holds]


def to_pool_operation(row: asyncpg.Record) -> PoolOperation:
    plan = row["plan"]
    return from_row(
        PoolOperation,
        row,
        fingerprint=bytes(row["fingerprint"]),
        step=Step(row["step"]),
        plan=Plan(
            kind=row["kind"],
            office_id=row["office_id"],
            reservations=tuple(
                Reservation(
                    r["license_type"],
                    tuple((int(kind), str(assignee)) for kind, assignee in r["assignees"]),
                    bool(r["purchase_if_needed"]),
                )
                for r in plan["reservations"]
            ),
            returns=tuple(uuid.UUID(u) for u in plan["returns"]),
            args=dict(plan["args"]),
        ),
        holds=tuple(
            Held(uuid.UUID(h["hold_id"]), tuple(uuid.UUID(u) for u in h["unit_ids"]))
            for h in row["holds"]
        ),
        response=bytes(row["response"]) if row["response"] is not None else None,
    )
