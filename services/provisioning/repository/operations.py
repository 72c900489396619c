"""Pool operations: the durable record of an operation that takes pool units.

Leases are on the database's own clock: they measure whether a driver is alive, not
business time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.provisioning.domain.pool_operation import Held, Plan, PoolOperation
from services.provisioning.repository.rows import (
    OPERATION_COLUMNS,
    holds_json,
    plan_json,
    to_pool_operation,
)


class Operations:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def start_operation(
        self,
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
        row = await self._conn.fetchrow(
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
        self, company_id: uuid.UUID, request_id: str, for_update: bool = False
    ) -> PoolOperation | None:
        row = await self._conn.fetchrow(
            f"SELECT {OPERATION_COLUMNS} FROM provisioning.pool_operations"
            " WHERE company_id = $1 AND request_id = $2" + (" FOR UPDATE" if for_update else ""),
            company_id,
            request_id,
        )
        return to_pool_operation(row) if row else None

    async def lease_operation(
        self,
        company_id: uuid.UUID,
        request_id: str,
        owner: uuid.UUID,
        lease_seconds: float,
    ) -> PoolOperation | None:
        """Makes `owner` the only driver of an unfinished operation whose lease ended."""
        row = await self._conn.fetchrow(
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

    async def drop_lease(self, operation: PoolOperation) -> None:
        await self._conn.execute(
            "UPDATE provisioning.pool_operations SET lease_until = now()"
            " WHERE company_id = $1 AND request_id = $2 AND lease_owner = $3"
            " AND step IN ('RESERVING', 'WRITTEN')",
            operation.company_id,
            operation.request_id,
            operation.lease_owner,
        )

    async def set_round(self, operation: PoolOperation, round_: int) -> bool:
        result: str = await self._conn.execute(
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
        operation: PoolOperation,
        holds: Sequence[Held],
        response: bytes,
        lease_seconds: float,
    ) -> PoolOperation:
        """RESERVING -> WRITTEN (the caller holds the row lock and checked the step)."""
        row = await self._conn.fetchrow(
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

    async def complete_operation(self, operation: PoolOperation) -> None:
        """WRITTEN -> DONE (the caller holds the row lock and checked the step)."""
        await self._conn.execute(
            "UPDATE provisioning.pool_operations SET step = 'DONE', updated_at = now()"
            " WHERE company_id = $1 AND request_id = $2 AND attempt = $3",
            operation.company_id,
            operation.request_id,
            operation.attempt,
        )

    async def delete_operation(self, operation: PoolOperation) -> None:
        """An undone operation leaves no record (the caller holds the row lock and
        checked the step)."""
        await self._conn.execute(
            "DELETE FROM provisioning.pool_operations"
            " WHERE company_id = $1 AND request_id = $2 AND attempt = $3",
            operation.company_id,
            operation.request_id,
            operation.attempt,
        )

    async def interrupted_operations(self, limit: int) -> list[tuple[uuid.UUID, str]]:
        """Unfinished operations whose driver's lease ended, oldest first."""
        rows = await self._conn.fetch(
            "SELECT company_id, request_id FROM provisioning.pool_operations"
            " WHERE step IN ('RESERVING', 'WRITTEN') AND lease_until <= now()"
            " ORDER BY lease_until LIMIT $1",
            limit,
        )
        return [(r["company_id"], r["request_id"]) for r in rows]
