"""Base licenses (their unit ids are the pool's), their add-ons, extensions and numbers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.provisioning.domain import errors
from services.provisioning.domain.model import License
from services.provisioning.repository.rows import LICENSE_COLUMNS, to_license


async def insert_addons(
    conn: asyncpg.Connection,
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


# Extensions and numbers are unique per company, checked at commit (an import may swap
# them between licenses); this checks them here, where a refusal can be named.
CHECK_DEFERRED = "SET CONSTRAINTS ALL IMMEDIATE"


class Licenses:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get_license(self, company_id: uuid.UUID, license_id: uuid.UUID) -> License | None:
        row = await self._conn.fetchrow(
            f"SELECT {LICENSE_COLUMNS} FROM provisioning.licenses l"
            " WHERE l.company_id = $1 AND l.license_id = $2",
            company_id,
            license_id,
        )
        return to_license(row) if row else None

    async def licenses_of_user(self, company_id: uuid.UUID, user_id: uuid.UUID) -> list[License]:
        rows = await self._conn.fetch(
            f"SELECT {LICENSE_COLUMNS} FROM provisioning.licenses l"
            " WHERE l.company_id = $1 AND l.user_id = $2 ORDER BY l.created_at, l.license_id",
            company_id,
            user_id,
        )
        return [to_license(r) for r in rows]

    async def user_has_type(
        self, company_id: uuid.UUID, user_id: uuid.UUID, license_type: str
    ) -> bool:
        found: bool = await self._conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM provisioning.licenses"
            " WHERE company_id = $1 AND user_id = $2 AND license_type = $3)",
            company_id,
            user_id,
            license_type,
        )
        return found

    async def search_licenses(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        license_type: str | None,
        user_id: uuid.UUID | None,
        ext_prefix: str | None,
        number_key: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[License]:
        rows = await self._conn.fetch(
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

    async def insert_license(self, license: License) -> None:
        """USER_ALREADY_HAS_LICENSE if the user has one of the type; USER_NOT_FOUND if the
        user is gone."""
        try:
            await self._insert_license(license)
        except asyncpg.UniqueViolationError:
            raise errors.already_has_license(license.user_id, license.license_type) from None
        except asyncpg.ForeignKeyViolationError:
            raise errors.user_not_found(license.user_id) from None

    async def _insert_license(self, license: License) -> None:
        await self._conn.execute(
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

    async def delete_license(self, company_id: uuid.UUID, license_id: uuid.UUID) -> None:
        await self._conn.execute(
            "DELETE FROM provisioning.licenses WHERE company_id = $1 AND license_id = $2",
            company_id,
            license_id,
        )

    async def reassign(
        self,
        company_id: uuid.UUID,
        license_id: uuid.UUID,
        user_id: uuid.UUID,
        now: datetime,
    ) -> None:
        await self._conn.execute(
            "UPDATE provisioning.licenses SET user_id = $3, updated_at = $4"
            " WHERE company_id = $1 AND license_id = $2",
            company_id,
            license_id,
            user_id,
            now,
        )

    async def ext_key_holder(self, company_id: uuid.UUID, ext_key: str) -> uuid.UUID | None:
        holder: uuid.UUID | None = await self._conn.fetchval(
            "SELECT license_id FROM provisioning.licenses WHERE company_id = $1 AND ext_key = $2",
            company_id,
            ext_key,
        )
        return holder

    async def number_holder(self, company_id: uuid.UUID, number_key: str) -> uuid.UUID | None:
        holder: uuid.UUID | None = await self._conn.fetchval(
            "SELECT license_id FROM provisioning.licenses"
            " WHERE company_id = $1 AND number_key = $2",
            company_id,
            number_key,
        )
        return holder

    async def set_extension(
        self,
        company_id: uuid.UUID,
        license_id: uuid.UUID,
        ext_key: str | None,
        number: str | None,
        now: datetime,
    ) -> None:
        """EXT_KEY_TAKEN or NUMBER_TAKEN if a concurrent writer took it first."""
        try:
            await self._conn.execute(
                "UPDATE provisioning.licenses SET ext_key = $3, number = $4, updated_at = $5"
                " WHERE company_id = $1 AND license_id = $2",
                company_id,
                license_id,
                ext_key,
                number,
                now,
            )
            await self._conn.execute(CHECK_DEFERRED)
        except asyncpg.UniqueViolationError as error:
            if "number" in (error.constraint_name or ""):
                raise errors.number_taken(number or "") from None
            raise errors.ext_key_taken(ext_key or "") from None

    async def insert_addons(
        self,
        company_id: uuid.UUID,
        addons: Sequence[tuple[uuid.UUID, uuid.UUID, str]],  # addon, license, type
        now: datetime,
    ) -> None:
        """CONCURRENT_CHANGE if the license changed meanwhile (gone, or the add-on is
        there already)."""
        try:
            await insert_addons(self._conn, company_id, addons, now)
        except (asyncpg.UniqueViolationError, asyncpg.ForeignKeyViolationError):
            raise errors.license_changed() from None

    async def delete_addons(self, company_id: uuid.UUID, addon_ids: Sequence[uuid.UUID]) -> None:
        await self._conn.execute(
            "DELETE FROM provisioning.addons WHERE company_id = $1 AND addon_id = ANY($2::uuid[])",
            company_id,
            list(addon_ids),
        )

    async def touch_license(
        self, company_id: uuid.UUID, license_id: uuid.UUID, now: datetime
    ) -> None:
        await self._conn.execute(
            "UPDATE provisioning.licenses SET updated_at = $3"
            " WHERE company_id = $1 AND license_id = $2",
            company_id,
            license_id,
            now,
        )

    async def addon_base(self, company_id: uuid.UUID, addon_id: uuid.UUID) -> uuid.UUID | None:
        base: uuid.UUID | None = await self._conn.fetchval(
            "SELECT license_id FROM provisioning.addons WHERE company_id = $1 AND addon_id = $2",
            company_id,
            addon_id,
        )
        return base
