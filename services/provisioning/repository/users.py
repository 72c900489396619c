"""Users: who holds a user license (their `license_unit_id`) in which office."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.provisioning.domain import errors
from services.provisioning.domain.model import User
from services.provisioning.repository.rows import USER_COLUMNS, to_user


class Users:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def insert_user(self, user: User) -> None:
        """EMAIL_TAKEN if another user of the company has the e-mail; UNIT_IN_USE if
        another user still holds the unit (the pool was told it is free: it was given
        back to the pool directly, not through this service)."""
        try:
            await self._insert_user(user)
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == "users_email":
                raise errors.email_taken(user.email or "") from None
            if error.constraint_name == "users_license_unit_id_key":
                raise errors.unit_held_by_a_user(user.license_unit_id) from None
            raise

    async def _insert_user(self, user: User) -> None:
        await self._conn.execute(
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

    async def get_user(self, company_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
        row = await self._conn.fetchrow(
            f"SELECT {USER_COLUMNS} FROM provisioning.users WHERE company_id = $1 AND user_id = $2",
            company_id,
            user_id,
        )
        return to_user(row) if row else None

    async def email_holder(self, company_id: uuid.UUID, email: str) -> uuid.UUID | None:
        holder: uuid.UUID | None = await self._conn.fetchval(
            "SELECT user_id FROM provisioning.users"
            " WHERE company_id = $1 AND lower(email) = lower($2)",
            company_id,
            email,
        )
        return holder

    async def list_users(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        query: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[User]:
        rows = await self._conn.fetch(
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
        company_id: uuid.UUID,
        user_id: uuid.UUID,
        old_unit_id: uuid.UUID,
        license_type: str,
        unit_id: uuid.UUID,
        now: datetime,
    ) -> User | None:
        row = await self._conn.fetchrow(
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

    async def delete_user(self, company_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        await self._conn.execute(
            "DELETE FROM provisioning.licenses WHERE company_id = $1 AND user_id = $2",
            company_id,
            user_id,
        )
        result: str = await self._conn.execute(
            "DELETE FROM provisioning.users WHERE company_id = $1 AND user_id = $2",
            company_id,
            user_id,
        )
        return result.endswith(" 1")
