"""Imports: the stored file (its planned rows), its progress, its pool steps, and the
final transaction that writes every row's effect."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.provisioning.domain import errors
from services.provisioning.domain.catalog import PHONE_SYSTEM
from services.provisioning.domain.csv_import import Account, AccountUser, ExistingLicense
from services.provisioning.domain.csv_import import PlannedRow as ImportRow
from services.provisioning.domain.model import Failure, ImportJob, StoredImport, StoredStep
from services.provisioning.repository.licenses import CHECK_DEFERRED, insert_addons
from services.provisioning.repository.rows import (
    IMPORT_COLUMNS,
    issues_json,
    quote_json,
    to_import,
)


def _import_values(job: ImportJob, fingerprint: bytes, chunk_size: int) -> tuple[object, ...]:
    """$1 to $12 of the statements that store a new import (a first start or a restart):
    the import's key, its request and what its rows come to."""
    return (
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
    )


class Imports:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def account(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Account:
        users = await self._conn.fetch(
            "SELECT user_id, display_name, email FROM provisioning.users"
            " WHERE company_id = $1 AND office_id = $2",
            company_id,
            office_id,
        )
        phones = await self._conn.fetch(
            """
            SELECT l.license_id, l.user_id, l.ext_key, l.number,
                coalesce((SELECT array_agg(a.license_type) FROM provisioning.addons a
                          WHERE a.company_id = l.company_id AND a.license_id = l.license_id),
                         '{}') AS addons
            FROM provisioning.licenses l
            WHERE l.company_id = $1 AND l.office_id = $2 AND l.license_type = $3
            """,
            company_id,
            office_id,
            PHONE_SYSTEM,
        )
        taken = await self._conn.fetch(
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
        job: ImportJob,
        fingerprint: bytes,
        chunk_size: int,
        rows: Sequence[ImportRow],
    ) -> bool:
        """Stores a new import and its rows; False if the id is already taken."""
        inserted = await self._conn.fetchval(
            """
            INSERT INTO provisioning.imports (company_id, import_id, office_id, fingerprint,
                state, stage, chunk_size, row_count, rows_reconfiguring, warnings, quote,
                units_total, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
            ON CONFLICT DO NOTHING RETURNING 1
            """,
            *_import_values(job, fingerprint, chunk_size),
            job.created_at,
        )
        if not inserted:
            return False
        await self._insert_rows(job, rows)
        return True

    async def restart_failed_import(
        self,
        job: ImportJob,
        fingerprint: bytes,
        chunk_size: int,
        rows: Sequence[ImportRow],
        attempt: int,
    ) -> bool:
        """Replaces a FAILED import with a new one under the same id, at `attempt`;
        False if it is no longer FAILED (a concurrent start took it)."""
        restarted = await self._conn.fetchval(
            """
            UPDATE provisioning.imports SET office_id = $3, fingerprint = $4, state = $5,
                stage = $6, chunk_size = $7, row_count = $8, rows_reconfiguring = $9,
                warnings = $10, quote = $11, units_total = $12, units_reserved = 0,
                units_committed = 0, rows_applied = 0, failure = NULL, attempt = $13,
                created_at = $14, updated_at = $14
            WHERE company_id = $1 AND import_id = $2 AND state = 'FAILED'
            RETURNING 1
            """,
            *_import_values(job, fingerprint, chunk_size),
            attempt,
            job.created_at,
        )
        if not restarted:
            return False
        await self._conn.execute(
            "DELETE FROM provisioning.import_rows WHERE company_id = $1 AND import_id = $2",
            job.company_id,
            job.import_id,
        )
        await self._insert_rows(job, rows)
        return True

    async def _insert_rows(self, job: ImportJob, rows: Sequence[ImportRow]) -> None:
        await self._conn.execute(
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

    async def get_import(self, company_id: uuid.UUID, import_id: str) -> StoredImport | None:
        row = await self._conn.fetchrow(
            f"SELECT {IMPORT_COLUMNS} FROM provisioning.imports"
            " WHERE company_id = $1 AND import_id = $2",
            company_id,
            import_id,
        )
        return to_import(row) if row else None

    async def running_imports(self) -> list[tuple[uuid.UUID, str]]:
        rows = await self._conn.fetch(
            "SELECT company_id, import_id FROM provisioning.imports WHERE state = 'RUNNING'"
            " ORDER BY updated_at"
        )
        return [(r["company_id"], r["import_id"]) for r in rows]

    async def import_rows(self, company_id: uuid.UUID, import_id: str) -> list[ImportRow]:
        rows = await self._conn.fetch(
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

    async def update_import(self, company_id: uuid.UUID, import_id: str, **fields: Any) -> None:
        if "failure" in fields and fields["failure"] is not None:
            failure: Failure = fields["failure"]
            fields["failure"] = {
                "reason": failure.reason,
                "message": failure.message,
                "metadata": failure.metadata,
            }
        names = list(fields)
        assignments = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
        await self._conn.execute(
            f"UPDATE provisioning.imports SET {assignments}, updated_at = now()"
            " WHERE company_id = $1 AND import_id = $2",
            company_id,
            import_id,
            *(fields[n] for n in names),
        )

    async def steps(
        self, company_id: uuid.UUID, import_id: str, attempt: int
    ) -> dict[int, StoredStep]:
        rows = await self._conn.fetch(
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
        company_id: uuid.UUID,
        import_id: str,
        attempt: int,
        step: StoredStep,
    ) -> None:
        await self._conn.execute(
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
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        rows: Sequence[ImportRow],
        new_bases: dict[int, uuid.UUID],
        addons: Sequence[tuple[uuid.UUID, uuid.UUID, str]],
        now: datetime,
    ) -> None:
        """Writes every row's effect (in the caller's transaction): new Phone System
        licenses, reconfigured extensions and numbers, add-ons. ImportConflict if a
        constraint refuses a row (an extension, number or license of the file was taken
        meanwhile)."""
        try:
            fresh = [r for r in rows if r.license_id is None]
            await self._conn.execute(
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
            await self._conn.execute(
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
            await insert_addons(self._conn, company_id, addons, now)
            await self._conn.execute(CHECK_DEFERRED)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise errors.ImportConflict(error.constraint_name or "") from None

    async def licenses_exist(self, company_id: uuid.UUID, license_ids: Sequence[uuid.UUID]) -> int:
        count: int = await self._conn.fetchval(
            "SELECT count(*) FROM provisioning.licenses"
            " WHERE company_id = $1 AND license_id = ANY($2::uuid[])",
            company_id,
            list(license_ids),
        )
        return count

    async def users_exist(
        self, company_id: uuid.UUID, office_id: uuid.UUID, user_ids: Sequence[uuid.UUID]
    ) -> int:
        count: int = await self._conn.fetchval(
            "SELECT count(*) FROM provisioning.users"
            " WHERE company_id = $1 AND office_id = $2 AND user_id = ANY($3::uuid[])",
            company_id,
            office_id,
            list(user_ids),
        )
        return count

    async def add_progress(
        self, company_id: uuid.UUID, import_id: str, reserved: int = 0, committed: int = 0
    ) -> None:
        """Counts units held and assigned by an import (concurrent steps add up)."""
        await self._conn.execute(
            "UPDATE provisioning.imports SET units_reserved = units_reserved + $3,"
            " units_committed = units_committed + $4, updated_at = now()"
            " WHERE company_id = $1 AND import_id = $2",
            company_id,
            import_id,
            reserved,
            committed,
        )
