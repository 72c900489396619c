"""Office caps and what capped offices drew, balance thresholds, the shared balances'
top-up levels, and credit alerts."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs.common.rows import from_row
from services.credits.domain.caps import DrawKey
from services.credits.domain.model import CreditAlert, Period, Threshold, ThresholdKind

# What a capped office drew in each (office, period): the running total when kept, else
# the sum of its usage records in the period.
LOAD_DRAWS = """
SELECT w.office_id, w.period_start, coalesce(d.drawn, (
        SELECT coalesce(sum(u.from_company_pool), 0) FROM credits.usage_records u
        WHERE u.company_id = $1 AND u.office_id = w.office_id
          AND u.occurred_at >= w.period_start AND u.occurred_at < w.period_end
    ))::bigint AS drawn
FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[])
    AS w(office_id, period_start, period_end)
LEFT JOIN credits.office_pool_draws d
    ON d.company_id = $1 AND d.office_id = w.office_id AND d.period_start = w.period_start
"""

SAVE_DRAWS = """
INSERT INTO credits.office_pool_draws (company_id, office_id, period_start, drawn)
SELECT $1, w.office_id, w.period_start, w.drawn
FROM unnest($2::uuid[], $3::timestamptz[], $4::bigint[]) AS w(office_id, period_start, drawn)
ON CONFLICT (company_id, office_id, period_start) DO UPDATE SET drawn = EXCLUDED.drawn
"""

CAP_COLUMNS = "c.company_id, c.office_id, o.currency, o.period_anchor, c.cap, c.updated_at"

ALERT_COLUMNS = """alert_id, company_id, currency, threshold_kind, threshold_value,
    period_start, period_end, level, balance, usage_id, office_id, created_at"""

INSERT_ALERTS = f"""
INSERT INTO credits.credit_alerts ({ALERT_COLUMNS})
SELECT a.alert_id, $1, a.currency, a.threshold_kind, a.threshold_value, a.period_start,
    a.period_end, a.level, a.balance, a.usage_id, a.office_id, a.created_at
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[],
    $7::timestamptz[], $8::bigint[], $9::bigint[], $10::uuid[], $11::uuid[], $12::timestamptz[])
    AS a(alert_id, currency, threshold_kind, threshold_value, period_start, period_end, level,
         balance, usage_id, office_id, created_at)
ON CONFLICT (company_id, currency, threshold_kind, threshold_value, period_start) DO NOTHING
RETURNING alert_id
"""

LIST_ALERTS = f"""
SELECT {ALERT_COLUMNS} FROM credits.credit_alerts
WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2)
  AND ($3::timestamptz IS NULL OR (created_at, alert_id) > ($3, $4::uuid))
ORDER BY created_at, alert_id LIMIT $5
"""


def to_alert(row: asyncpg.Record) -> CreditAlert:
    return CreditAlert(
        alert_id=row["alert_id"],
        company_id=row["company_id"],
        currency=row["currency"],
        threshold=Threshold(ThresholdKind(row["threshold_kind"]), row["threshold_value"]),
        period=Period(row["period_start"], row["period_end"]),
        level=row["level"],
        balance=row["balance"],
        usage_id=row["usage_id"],
        office_id=row["office_id"],
        created_at=row["created_at"],
    )


@dataclass(frozen=True, slots=True)
class StoredCap:
    """A cap, with what its office's current period needs (currency, anchor)."""

    company_id: uuid.UUID
    office_id: uuid.UUID
    currency: str
    period_anchor: datetime
    cap: int
    updated_at: datetime


class LimitsRepository:
    """Caps, draws, thresholds, top-up levels and alerts, on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    # --- caps -----------------------------------------------------------------------------

    async def set_cap(
        self, company_id: uuid.UUID, office_id: uuid.UUID, cap: int, now: datetime
    ) -> None:
        await self._conn.execute(
            """
            INSERT INTO credits.office_caps (company_id, office_id, cap, updated_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (company_id, office_id) DO UPDATE
                SET cap = EXCLUDED.cap, updated_at = EXCLUDED.updated_at
            """,
            company_id,
            office_id,
            cap,
            now,
        )

    async def clear_cap(self, company_id: uuid.UUID, office_id: uuid.UUID) -> bool:
        """Removes the cap and its running totals; whether there was one."""
        status: str = await self._conn.execute(
            "DELETE FROM credits.office_caps WHERE company_id = $1 AND office_id = $2",
            company_id,
            office_id,
        )
        return status != "DELETE 0"

    async def caps(
        self,
        company_id: uuid.UUID,
        office_ids: Sequence[uuid.UUID] | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[StoredCap]:
        """Caps of the company (of the named offices, when given), by office id."""
        rows = await self._conn.fetch(
            f"""
            SELECT {CAP_COLUMNS} FROM credits.office_caps c
            JOIN credits.offices o ON o.company_id = c.company_id AND o.office_id = c.office_id
            WHERE c.company_id = $1 AND ($2::uuid[] IS NULL OR c.office_id = ANY($2::uuid[]))
              AND ($3::uuid IS NULL OR c.office_id > $3)
            ORDER BY c.office_id LIMIT $4
            """,
            company_id,
            list(office_ids) if office_ids is not None else None,
            after,
            limit,
        )
        return [from_row(StoredCap, r) for r in rows]

    async def draws(
        self, company_id: uuid.UUID, periods: Mapping[DrawKey, Period]
    ) -> dict[DrawKey, int]:
        """What each capped office drew from the shared balance in each period."""
        if not periods:
            return {}
        keys = list(periods)
        rows = await self._conn.fetch(
            LOAD_DRAWS,
            company_id,
            [office for office, _ in keys],
            [start for _, start in keys],
            [periods[key].end for key in keys],
        )
        return {(r["office_id"], r["period_start"]): r["drawn"] for r in rows}

    async def save_draws(self, company_id: uuid.UUID, drawn: Mapping[DrawKey, int]) -> None:
        """Keeps the running totals of capped offices (one statement)."""
        if not drawn:
            return
        keys = list(drawn)
        await self._conn.execute(
            SAVE_DRAWS,
            company_id,
            [office for office, _ in keys],
            [start for _, start in keys],
            [drawn[key] for key in keys],
        )

    # --- thresholds and top-up levels -----------------------------------------------------

    async def thresholds(self, company_id: uuid.UUID, currency: str) -> list[Threshold]:
        rows = await self._conn.fetch(
            "SELECT kind, value FROM credits.credit_thresholds"
            " WHERE company_id = $1 AND currency = $2 ORDER BY kind, value",
            company_id,
            currency,
        )
        return [Threshold(ThresholdKind(r["kind"]), r["value"]) for r in rows]

    async def set_thresholds(
        self, company_id: uuid.UUID, currency: str, thresholds: Sequence[Threshold], now: datetime
    ) -> None:
        """Replaces the currency's thresholds; those that stay keep their created_at."""
        await self._conn.execute(
            """
            DELETE FROM credits.credit_thresholds t
            WHERE t.company_id = $1 AND t.currency = $2
              AND (t.kind, t.value) NOT IN (SELECT * FROM unnest($3::text[], $4::bigint[]))
            """,
            company_id,
            currency,
            [t.kind.value for t in thresholds],
            [t.value for t in thresholds],
        )
        await self._conn.execute(
            """
            INSERT INTO credits.credit_thresholds (company_id, currency, kind, value, created_at)
            SELECT $1, $2, w.kind, w.value, $5
            FROM unnest($3::text[], $4::bigint[]) AS w(kind, value)
            ON CONFLICT (company_id, currency, kind, value) DO NOTHING
            """,
            company_id,
            currency,
            [t.kind.value for t in thresholds],
            [t.value for t in thresholds],
            now,
        )

    async def top_up(self, company_id: uuid.UUID, currency: str) -> int:
        level: int | None = await self._conn.fetchval(
            "SELECT level FROM credits.pool_top_ups WHERE company_id = $1 AND currency = $2",
            company_id,
            currency,
        )
        return level or 0

    async def set_top_up(
        self, company_id: uuid.UUID, currency: str, level: int, now: datetime
    ) -> None:
        await self._conn.execute(
            """
            INSERT INTO credits.pool_top_ups (company_id, currency, level, updated_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (company_id, currency) DO UPDATE
                SET level = EXCLUDED.level, updated_at = EXCLUDED.updated_at
            """,
            company_id,
            currency,
            level,
            now,
        )

    # --- alerts ---------------------------------------------------------------------------

    async def record_alerts(
        self, company_id: uuid.UUID, alerts: Sequence[CreditAlert]
    ) -> list[CreditAlert]:
        """Appends the alerts (one statement) and returns those recorded: one that its
        threshold already has in the period is dropped by the unique key."""
        if not alerts:
            return []
        rows = await self._conn.fetch(
            INSERT_ALERTS,
            company_id,
            [a.alert_id for a in alerts],
            [a.currency for a in alerts],
            [a.threshold.kind.value for a in alerts],
            [a.threshold.value for a in alerts],
            [a.period.start for a in alerts],
            [a.period.end for a in alerts],
            [a.level for a in alerts],
            [a.balance for a in alerts],
            [a.usage_id for a in alerts],
            [a.office_id for a in alerts],
            [a.created_at for a in alerts],
        )
        recorded = {r["alert_id"] for r in rows}
        return [a for a in alerts if a.alert_id in recorded]

    async def alerts(
        self,
        company_id: uuid.UUID,
        currency: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[CreditAlert]:
        """Alerts in (created_at, alert_id) order, after `after`."""
        rows = await self._conn.fetch(
            LIST_ALERTS,
            company_id,
            currency,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [to_alert(r) for r in rows]
