"""Every SQL statement of the provisioning service (schema `provisioning`, raw asyncpg)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from libs.common.idempotency import IdempotencyKey, reused
from services.provisioning.domain.catalog import PHONE_SYSTEM
from services.provisioning.domain.csv_import import Account, AccountUser, ExistingLicense
from services.provisioning.domain.csv_import import PlannedRow as ImportRow
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
              FROM provisioning.addons a WHERE a.license_id = l.license_id),
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
    return License(
        license_id=row["license_id"],
        company_id=row["company_id"],
        office_id=row["office_id"],
        license_type=row["license_type"],
        user_id=row["user_id"],
        ext_key=row["ext_key"],
        number=row["number"],
        addons=tuple(addons),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


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


@dataclass(frozen=True, slots=True)
class StoredImport:
    job: ImportJob
    fingerprint: bytes
    attempt: int
    chunk_size: int


@dataclass(frozen=True, slots=True)
class StoredStep:
    step: int
    license_type: str
    hold_id: uuid.UUID | None
    unit_ids: tuple[uuid.UUID, ...]
    shortfall: int
    committed: bool


def to_import(row: asyncpg.Record) -> StoredImport:
    failure = row["failure"]
    job = ImportJob(
        import_id=row["import_id"],
        company_id=row["company_id"],
        office_id=row["office_id"],
        state=ImportState(row["state"]),
        stage=ImportStage(row["stage"]),
        row_count=row["row_count"],
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
        rows_reconfiguring=row["rows_reconfiguring"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
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
    return PoolOperation(
        company_id=row["company_id"],
        request_id=row["request_id"],
        fingerprint=bytes(row["fingerprint"]),
        attempt=row["attempt"],
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
        round=row["round"],
        holds=tuple(
            Held(uuid.UUID(h["hold_id"]), tuple(uuid.UUID(u) for u in h["unit_ids"]))
            for h in row["holds"]
        ),
        response=bytes(row["response"]) if row["response"] is not None else None,
        lease_owner=row["lease_owner"],
    )


class ProvisioningRepository:
    """The provisioning schema; every method runs on the caller's connection."""

    async def now(self, conn: Conn, clock_now: datetime | None) -> datetime:
        value: datetime = await conn.fetchval("SELECT coalesce($1::timestamptz, now())", clock_now)
        return value

    # --- users --------------------------------------------------------------------------

    async def insert_user(self, conn: Conn, user: User) -> None:
        await conn.execute(
            f"INSERT INTO provisioning.users ({USER_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            user.user_id,
            user.company_id,
            user.office_id,
            user.display_name,
            user.email,
            user.license_type,
            user.license_unit_id,
            user.created_at,
            user.updated_at,
        )

    async def get_user(self, conn: Conn, company_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
        row = await conn.fetchrow(
            f"SELECT {USER_COLUMNS} FROM provisioning.users WHERE company_id = $1 AND user_id = $2",
            company_id,
            user_id,
        )
        return to_user(row) if row else None

    async def email_holder(self, conn: Conn, company_id: uuid.UUID, email: str) -> uuid.UUID | None:
        holder: uuid.UUID | None = await conn.fetchval(
            "SELECT user_id FROM provisioning.users"
            " WHERE company_id = $1 AND lower(email) = lower($2)",
            company_id,
            email,
        )
        return holder

    async def list_users(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        query: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[User]:
        rows = await conn.fetch(
            f"""
            SELECT {USER_COLUMNS} FROM provisioning.users
            WHERE company_id = $1 AND ($2::uuid IS NULL OR office_id = $2)
              AND ($3::text IS NULL OR strpos(lower(display_name), lower($3)) > 0
                   OR strpos(lower(coalesce(email, '')), lower($3)) > 0)
              AND ($4::timestamptz IS NULL OR (created_at, user_id) > ($4, $5::uuid))
            ORDER BY created_at, user_id LIMIT $6
            """,
            company_id,
            office_id,
            query,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [to_user(r) for r in rows]

    async def change_user_license(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        user_id: uuid.UUID,
        old_unit_id: uuid.UUID,
        license_type: str,
        unit_id: uuid.UUID,
        now: datetime,
    ) -> User | None:
        row = await conn.fetchrow(
            f"""
            UPDATE provisioning.users SET license_type = $4, license_unit_id = $5, updated_at = $6
            WHERE company_id = $1 AND user_id = $2 AND license_unit_id = $3
            RETURNING {USER_COLUMNS}
            """,
            company_id,
            user_id,
            old_unit_id,
            license_type,
            unit_id,
            now,
        )
        return to_user(row) if row else None

    async def delete_user(self, conn: Conn, company_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        await conn.execute(
            "DELETE FROM provisioning.licenses WHERE company_id = $1 AND user_id = $2",
            company_id,
            user_id,
        )
        result: str = await conn.execute(
            "DELETE FROM provisioning.users WHERE company_id = $1 AND user_id = $2",
            company_id,
            user_id,
        )
        return result.endswith(" 1")

    # --- licenses -----------------------------------------------------------------------

    async def get_license(
        self, conn: Conn, company_id: uuid.UUID, license_id: uuid.UUID
    ) -> License | None:
        row = await conn.fetchrow(
            f"SELECT {LICENSE_COLUMNS} FROM provisioning.licenses l"
            " WHERE l.company_id = $1 AND l.license_id = $2",
            company_id,
            license_id,
        )
        return to_license(row) if row else None

    async def licenses_of_user(
        self, conn: Conn, company_id: uuid.UUID, user_id: uuid.UUID
    ) -> list[License]:
        rows = await conn.fetch(
            f"SELECT {LICENSE_COLUMNS} FROM provisioning.licenses l"
            " WHERE l.company_id = $1 AND l.user_id = $2 ORDER BY l.created_at, l.license_id",
            company_id,
            user_id,
        )
        return [to_license(r) for r in rows]

    async def user_has_type(self, conn: Conn, user_id: uuid.UUID, license_type: str) -> bool:
        found: bool = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM provisioning.licenses"
            " WHERE user_id = $1 AND license_type = $2)",
            user_id,
            license_type,
        )
        return found

    async def search_licenses(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        license_type: str | None,
        user_id: uuid.UUID | None,
        ext_prefix: str | None,
        number_key: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[License]:
        rows = await conn.fetch(
            f"""
            SELECT {LICENSE_COLUMNS} FROM provisioning.licenses l
            WHERE l.company_id = $1 AND ($2::uuid IS NULL OR l.office_id = $2)
              AND ($3::text IS NULL OR l.license_type = $3)
              AND ($4::uuid IS NULL OR l.user_id = $4)
              AND ($5::text IS NULL OR starts_with(l.ext_key, $5))
              AND ($6::text IS NULL OR l.number_key = $6)
              AND ($7::timestamptz IS NULL OR (l.created_at, l.license_id) > ($7, $8::uuid))
            ORDER BY l.created_at, l.license_id LIMIT $9
            """,
            company_id,
            office_id,
            license_type,
            user_id,
            ext_prefix,
            number_key,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [to_license(r) for r in rows]

    async def insert_license(self, conn: Conn, license: License) -> None:
        await conn.execute(
            """
            INSERT INTO provisioning.licenses (license_id, company_id, office_id, license_type,
                user_id, ext_key, number, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
            """,
            license.license_id,
            license.company_id,
            license.office_id,
            license.license_type,
            license.user_id,
            license.ext_key,
            license.number,
            license.created_at,
        )

    async def delete_license(
        self, conn: Conn, company_id: uuid.UUID, license_id: uuid.UUID
    ) -> None:
        await conn.execute(
            "DELETE FROM provisioning.licenses WHERE company_id = $1 AND license_id = $2",
            company_id,
            license_id,
        )

    async def reassign(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        license_id: uuid.UUID,
        user_id: uuid.UUID,
        now: datetime,
    ) -> None:
        await conn.execute(
            "UPDATE provisioning.licenses SET user_id = $3, updated_at = $4"
            " WHERE company_id = $1 AND license_id = $2",
            company_id,
            license_id,
            user_id,
            now,
        )

    async def ext_key_holder(
        self, conn: Conn, company_id: uuid.UUID, ext_key: str
    ) -> uuid.UUID | None:
        holder: uuid.UUID | None = await conn.fetchval(
            "SELECT license_id FROM provisioning.licenses WHERE company_id = $1 AND ext_key = $2",
            company_id,
            ext_key,
        )
        return holder

    async def number_holder(
        self, conn: Conn, company_id: uuid.UUID, number_key: str
    ) -> uuid.UUID | None:
        holder: uuid.UUID | None = await conn.fetchval(
            "SELECT license_id FROM provisioning.licenses"
            " WHERE company_id = $1 AND number_key = $2",
            company_id,
            number_key,
        )
        return holder

    async def set_extension(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        license_id: uuid.UUID,
        ext_key: str | None,
        number: str | None,
        now: datetime,
    ) -> None:
        await conn.execute(
            "UPDATE provisioning.licenses SET ext_key = $3, number = $4, updated_at = $5"
            " WHERE company_id = $1 AND license_id = $2",
            company_id,
            license_id,
            ext_key,
            number,
            now,
        )

    async def insert_addons(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        addons: Sequence[tuple[uuid.UUID, uuid.UUID, str]],  # addon, license, type
        now: datetime,
    ) -> None:
        if not addons:
            return
        await conn.execute(
            """
            INSERT INTO provisioning.addons (addon_id, company_id, license_id, license_type,
                created_at)
            SELECT a, $1, l, t, $5 FROM unnest($2::uuid[], $3::uuid[], $4::text[]) AS x(a, l, t)
            """,
            company_id,
            [a for a, _, _ in addons],
            [license_id for _, license_id, _ in addons],
            [t for _, _, t in addons],
            now,
        )

    async def delete_addons(
        self, conn: Conn, company_id: uuid.UUID, addon_ids: Sequence[uuid.UUID]
    ) -> None:
        await conn.execute(
            "DELETE FROM provisioning.addons WHERE company_id = $1 AND addon_id = ANY($2::uuid[])",
            company_id,
            list(addon_ids),
        )

    async def touch_license(
        self, conn: Conn, company_id: uuid.UUID, license_id: uuid.UUID, now: datetime
    ) -> None:
        await conn.execute(
            "UPDATE provisioning.licenses SET updated_at = $3"
            " WHERE company_id = $1 AND license_id = $2",
            company_id,
            license_id,
            now,
        )

    async def addon_base(
        self, conn: Conn, company_id: uuid.UUID, addon_id: uuid.UUID
    ) -> uuid.UUID | None:
        base: uuid.UUID | None = await conn.fetchval(
            "SELECT license_id FROM provisioning.addons WHERE company_id = $1 AND addon_id = $2",
            company_id,
            addon_id,
        )
        return base

    # --- idempotency ----------------------------------------------------------------------

    async def stored_response(self, conn: Conn, key: IdempotencyKey) -> bytes | None:
        """The stored response of an already completed request, if any; REQUEST_ID_REUSED
        if the request_id was used for another request."""
        row = await conn.fetchrow(
            "SELECT fingerprint, response FROM provisioning.idempotency_keys"
            " WHERE company_id = $1 AND request_id = $2",
            key.company_id,
            key.request_id,
        )
        if row is None or row["response"] is None:
            return None
        if bytes(row["fingerprint"]) != key.fingerprint:
            raise reused(key)
        return bytes(row["response"])

    # --- pool operations ----------------------------------------------------------------
    # Leases are on the database's own clock: they measure whether a driver is alive, not
    # business time.

    async def start_operation(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        request_id: str,
        fingerprint: bytes,
        plan: Plan,
        attempt: uuid.UUID,
        owner: uuid.UUID,
        lease_seconds: float,
    ) -> PoolOperation | None:
        """A new operation (one attempt) under the request_id, leased to `owner`. None if
        the request_id has one already (a concurrent duplicate started it)."""
        row = await conn.fetchrow(
            f"""
            INSERT INTO provisioning.pool_operations (company_id, request_id, fingerprint,
                attempt, step, kind, office_id, plan, lease_owner, lease_until)
            VALUES ($1, $2, $3, $4, 'RESERVING', $5, $6, $7, $8,
                now() + make_interval(secs => $9))
            ON CONFLICT (company_id, request_id) DO NOTHING
            RETURNING {OPERATION_COLUMNS}
            """,
            company_id,
            request_id,
            fingerprint,
            attempt,
            plan.kind,
            plan.office_id,
            plan_json(plan),
            owner,
            lease_seconds,
        )
        return to_pool_operation(row) if row else None

    async def get_operation(
        self, conn: Conn, company_id: uuid.UUID, request_id: str, for_update: bool = False
    ) -> PoolOperation | None:
        row = await conn.fetchrow(
            f"SELECT {OPERATION_COLUMNS} FROM provisioning.pool_operations"
            " WHERE company_id = $1 AND request_id = $2" + (" FOR UPDATE" if for_update else ""),
            company_id,
            request_id,
        )
        return to_pool_operation(row) if row else None

    async def lease_operation(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        request_id: str,
        owner: uuid.UUID,
        lease_seconds: float,
    ) -> PoolOperation | None:
        """Makes `owner` the only driver of an unfinished operation whose lease ended."""
        row = await conn.fetchrow(
            f"""
            UPDATE provisioning.pool_operations
            SET lease_owner = $3, lease_until = now() + make_interval(secs => $4)
            WHERE company_id = $1 AND request_id = $2 AND step IN ('RESERVING', 'WRITTEN')
              AND lease_until <= now()
            RETURNING {OPERATION_COLUMNS}
            """,
            company_id,
            request_id,
            owner,
            lease_seconds,
        )
        return to_pool_operation(row) if row else None

    async def drop_lease(self, conn: Conn, operation: PoolOperation) -> None:
        await conn.execute(
            "UPDATE provisioning.pool_operations SET lease_until = now()"
            " WHERE company_id = $1 AND request_id = $2 AND lease_owner = $3"
            " AND step IN ('RESERVING', 'WRITTEN')",
            operation.company_id,
            operation.request_id,
            operation.lease_owner,
        )

    async def set_round(self, conn: Conn, operation: PoolOperation, round_: int) -> bool:
        result: str = await conn.execute(
            "UPDATE provisioning.pool_operations SET round = $4, updated_at = now()"
            " WHERE company_id = $1 AND request_id = $2 AND attempt = $3"
            " AND step = 'RESERVING'",
            operation.company_id,
            operation.request_id,
            operation.attempt,
            round_,
        )
        return result.endswith(" 1")

    async def mark_written(
        self,
        conn: Conn,
        operation: PoolOperation,
        holds: Sequence[Held],
        response: bytes,
        lease_seconds: float,
    ) -> PoolOperation:
        """RESERVING -> WRITTEN (the caller holds the row lock and checked the step)."""
        row = await conn.fetchrow(
            f"""
            UPDATE provisioning.pool_operations SET step = 'WRITTEN', holds = $3,
                response = $4, lease_until = now() + make_interval(secs => $5),
                updated_at = now()
            WHERE company_id = $1 AND request_id = $2
            RETURNING {OPERATION_COLUMNS}
            """,
            operation.company_id,
            operation.request_id,
            holds_json(holds),
            response,
            lease_seconds,
        )
        assert row is not None
        return to_pool_operation(row)

    async def complete_operation(self, conn: Conn, operation: PoolOperation) -> None:
        """WRITTEN -> DONE (the caller holds the row lock and checked the step)."""
        await conn.execute(
            "UPDATE provisioning.pool_operations SET step = 'DONE', updated_at = now()"
            " WHERE company_id = $1 AND request_id = $2 AND attempt = $3",
            operation.company_id,
            operation.request_id,
            operation.attempt,
        )

    async def delete_operation(self, conn: Conn, operation: PoolOperation) -> None:
        """An undone operation leaves no record (the caller holds the row lock and
        checked the step)."""
        await conn.execute(
            "DELETE FROM provisioning.pool_operations"
            " WHERE company_id = $1 AND request_id = $2 AND attempt = $3",
            operation.company_id,
            operation.request_id,
            operation.attempt,
        )

    async def interrupted_operations(self, conn: Conn, limit: int) -> list[tuple[uuid.UUID, str]]:
        """Unfinished operations whose driver's lease ended, oldest first."""
        rows = await conn.fetch(
            "SELECT company_id, request_id FROM provisioning.pool_operations"
            " WHERE step IN ('RESERVING', 'WRITTEN') AND lease_until <= now()"
            " ORDER BY lease_until LIMIT $1",
            limit,
        )
        return [(r["company_id"], r["request_id"]) for r in rows]

    # --- imports ------------------------------------------------------------------------

    async def account(self, conn: Conn, company_id: uuid.UUID, office_id: uuid.UUID) -> Account:
        users = await conn.fetch(
            "SELECT user_id, display_name, email FROM provisioning.users"
            " WHERE company_id = $1 AND office_id = $2",
            company_id,
            office_id,
        )
        phones = await conn.fetch(
            """
            SELECT l.license_id, l.user_id, l.ext_key, l.number,
                coalesce((SELECT array_agg(a.license_type) FROM provisioning.addons a
                          WHERE a.license_id = l.license_id), '{}') AS addons
            FROM provisioning.licenses l
            WHERE l.company_id = $1 AND l.office_id = $2 AND l.license_type = $3
            """,
            company_id,
            office_id,
            PHONE_SYSTEM,
        )
        taken = await conn.fetch(
            "SELECT license_id, ext_key, number_key FROM provisioning.licenses"
            " WHERE company_id = $1 AND (ext_key IS NOT NULL OR number_key IS NOT NULL)",
            company_id,
        )
        return Account(
            users=[AccountUser(r["user_id"], r["display_name"], r["email"]) for r in users],
            phone_systems={
                r["user_id"]: ExistingLicense(
                    r["license_id"], r["user_id"], r["ext_key"], r["number"], frozenset(r["addons"])
                )
                for r in phones
            },
            ext_keys={r["ext_key"]: r["license_id"] for r in taken if r["ext_key"] is not None},
            numbers={r["number_key"]: r["license_id"] for r in taken if r["number_key"]},
        )

    async def insert_import(
        self,
        conn: Conn,
        job: ImportJob,
        fingerprint: bytes,
        chunk_size: int,
        rows: Sequence[ImportRow],
    ) -> bool:
        """Stores a new import and its rows; False if the id is already taken."""
        inserted = await conn.fetchval(
            """
            INSERT INTO provisioning.imports (company_id, import_id, office_id, fingerprint,
                state, stage, chunk_size, row_count, rows_reconfiguring, warnings, quote,
                units_total, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
            ON CONFLICT DO NOTHING RETURNING 1
            """,
            job.company_id,
            job.import_id,
            job.office_id,
            fingerprint,
            job.state.value,
            job.stage.value,
            chunk_size,
            job.row_count,
            job.rows_reconfiguring,
            issues_json(job.warnings),
            quote_json(job.quote),
            job.progress.units_total,
            job.created_at,
        )
        if not inserted:
            return False
        await conn.execute(
            """
            INSERT INTO provisioning.import_rows (company_id, import_id, row_number, user_id,
                license_id, ext_key, number, new_addons)
            SELECT $1, $2, r, u, l, e, n, string_to_array(a, ',')
            FROM unnest($3::int[], $4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[])
                AS x(r, u, l, e, n, a)
            """,
            job.company_id,
            job.import_id,
            [r.row for r in rows],
            [r.user_id for r in rows],
            [r.license_id for r in rows],
            [r.ext_key for r in rows],
            [r.number for r in rows],
            [",".join(r.new_addons) for r in rows],
        )
        return True

    async def get_import(
        self, conn: Conn, company_id: uuid.UUID, import_id: str
    ) -> StoredImport | None:
        row = await conn.fetchrow(
            f"SELECT {IMPORT_COLUMNS} FROM provisioning.imports"
            " WHERE company_id = $1 AND import_id = $2",
            company_id,
            import_id,
        )
        return to_import(row) if row else None

    async def running_imports(self, conn: Conn) -> list[tuple[uuid.UUID, str]]:
        rows = await conn.fetch(
            "SELECT company_id, import_id FROM provisioning.imports WHERE state = 'RUNNING'"
            " ORDER BY updated_at"
        )
        return [(r["company_id"], r["import_id"]) for r in rows]

    async def import_rows(
        self, conn: Conn, company_id: uuid.UUID, import_id: str
    ) -> list[ImportRow]:
        rows = await conn.fetch(
            """
            SELECT row_number, user_id, license_id, ext_key, number, new_addons
            FROM provisioning.import_rows WHERE company_id = $1 AND import_id = $2
            ORDER BY row_number
            """,
            company_id,
            import_id,
        )
        return [
            ImportRow(
                r["row_number"],
                r["user_id"],
                r["license_id"],
                r["ext_key"],
                r["number"],
                tuple(a for a in r["new_addons"] if a),
            )
            for r in rows
        ]

    async def update_import(
        self, conn: Conn, company_id: uuid.UUID, import_id: str, **fields: Any
    ) -> None:
        if "failure" in fields and fields["failure"] is not None:
            failure: Failure = fields["failure"]
            fields["failure"] = {
                "reason": failure.reason,
                "message": failure.message,
                "metadata": failure.metadata,
            }
        names = list(fields)
        assignments = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
        await conn.execute(
            f"UPDATE provisioning.imports SET {assignments}, updated_at = now()"
            " WHERE company_id = $1 AND import_id = $2",
            company_id,
            import_id,
            *(fields[n] for n in names),
        )

    async def steps(
        self, conn: Conn, company_id: uuid.UUID, import_id: str, attempt: int
    ) -> dict[int, StoredStep]:
        rows = await conn.fetch(
            """
            SELECT step, license_type, hold_id, unit_ids, shortfall, committed
            FROM provisioning.import_steps
            WHERE company_id = $1 AND import_id = $2 AND attempt = $3
            """,
            company_id,
            import_id,
            attempt,
        )
        return {
            r["step"]: StoredStep(
                r["step"],
                r["license_type"],
                r["hold_id"],
                tuple(r["unit_ids"]),
                r["shortfall"],
                r["committed"],
            )
            for r in rows
        }

    async def save_step(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        import_id: str,
        attempt: int,
        step: StoredStep,
    ) -> None:
        await conn.execute(
            """
            INSERT INTO provisioning.import_steps (company_id, import_id, attempt, step,
                license_type, hold_id, unit_ids, shortfall, committed)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (company_id, import_id, attempt, step)
            DO UPDATE SET committed = EXCLUDED.committed
            """,
            company_id,
            import_id,
            attempt,
            step.step,
            step.license_type,
            step.hold_id,
            list(step.unit_ids),
            step.shortfall,
            step.committed,
        )

    async def finalize_import(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        rows: Sequence[ImportRow],
        new_bases: dict[int, uuid.UUID],
        addons: Sequence[tuple[uuid.UUID, uuid.UUID, str]],
        now: datetime,
    ) -> None:
        """Writes every row's effect (in the caller's transaction): new Phone System
        licenses, reconfigured extensions and numbers, add-ons."""
        fresh = [r for r in rows if r.license_id is None]
        await conn.execute(
            """
            INSERT INTO provisioning.licenses (license_id, company_id, office_id, license_type,
                user_id, ext_key, number, created_at, updated_at)
            SELECT l, $1, $2, $3, u, e, n, $4, $4
            FROM unnest($5::uuid[], $6::uuid[], $7::text[], $8::text[]) AS x(l, u, e, n)
            """,
            company_id,
            office_id,
            PHONE_SYSTEM,
            now,
            [new_bases[r.row] for r in fresh],
            [r.user_id for r in fresh],
            [r.ext_key for r in fresh],
            [r.number for r in fresh],
        )
        existing = [r for r in rows if r.license_id is not None]
        await conn.execute(
            """
            UPDATE provisioning.licenses l SET ext_key = x.e,
                number = coalesce(x.n, l.number), updated_at = $2
            FROM unnest($3::uuid[], $4::text[], $5::text[]) AS x(id, e, n)
            WHERE l.company_id = $1 AND l.license_id = x.id
            """,
            company_id,
            now,
            [r.license_id for r in existing],
            [r.ext_key for r in existing],
            [r.number for r in existing],
        )
        await self.insert_addons(conn, company_id, addons, now)

    async def licenses_exist(
        self, conn: Conn, company_id: uuid.UUID, license_ids: Sequence[uuid.UUID]
    ) -> int:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM provisioning.licenses"
            " WHERE company_id = $1 AND license_id = ANY($2::uuid[])",
            company_id,
            list(license_ids),
        )
        return count

    async def users_exist(
        self, conn: Conn, company_id: uuid.UUID, office_id: uuid.UUID, user_ids: Sequence[uuid.UUID]
    ) -> int:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM provisioning.users"
            " WHERE company_id = $1 AND office_id = $2 AND user_id = ANY($3::uuid[])",
            company_id,
            office_id,
            list(user_ids),
        )
        return count


async def add_progress(
    conn: Conn, company_id: uuid.UUID, import_id: str, reserved: int = 0, committed: int = 0
) -> None:
    """Counts units held and assigned by an import (concurrent steps add up)."""
    await conn.execute(
        "UPDATE provisioning.imports SET units_reserved = units_reserved + $3,"
        " units_committed = units_committed + $4, updated_at = now()"
        " WHERE company_id = $1 AND import_id = $2",
        company_id,
        import_id,
        reserved,
        committed,
    )
