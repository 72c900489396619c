"""Every SQL statement of the credits service (schema `credits`), on raw asyncpg.

Writers of one (company, currency) serialize on a transaction-level advisory lock
(`lock`), across replicas. Balances are maintained in `ledger_accounts` together with
the append-only `entries`, in the same transaction; CHECK constraints make a balance
below zero (or a counter-account above zero) impossible whatever the code above does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from services.credits.domain.model import (
    AccountKey,
    AccountKind,
    EntryKind,
    Grant,
    LedgerAccount,
    LedgerEntry,
    OfficeAccount,
    OveragePolicy,
    Period,
    Pooling,
    Posting,
    Split,
    UsageKind,
    UsageRecord,
    UsageTotal,
)

Conn: TypeAlias = asyncpg.Connection

OFFICE_COLUMNS = """company_id, office_id, currency, is_primary, allowance, period_anchor,
    overage_policy, created_at, updated_at"""
USAGE_COLUMNS = """usage_id, request_id, company_id, office_id, kind, currency, amount,
    occurred_at, period_start, period_end, from_allowance, from_office_balance,
    from_company_pool, from_ai_agent_credits, overage, recorded_at"""


def to_office(row: asyncpg.Record) -> OfficeAccount:
    return OfficeAccount(
        company_id=row["company_id"],
        office_id=row["office_id"],
        currency=row["currency"],
        primary=row["is_primary"],
        allowance=row["allowance"],
        period_anchor=row["period_anchor"],
        overage_policy=OveragePolicy(row["overage_policy"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def to_usage(row: asyncpg.Record) -> UsageRecord:
    return UsageRecord(
        usage_id=row["usage_id"],
        request_id=row["request_id"],
        company_id=row["company_id"],
        office_id=row["office_id"],
        kind=UsageKind(row["kind"]),
        currency=row["currency"],
        amount=row["amount"],
        occurred_at=row["occurred_at"],
        period=Period(row["period_start"], row["period_end"]),
        split=Split(
            allowance=row["from_allowance"],
            office_balance=row["from_office_balance"],
            company_pool=row["from_company_pool"],
            ai_agent_credits=row["from_ai_agent_credits"],
            overage=row["overage"],
        ),
        recorded_at=row["recorded_at"],
    )


def to_account(row: asyncpg.Record, prefix: str = "") -> LedgerAccount:
    kind = AccountKind(row[prefix + "kind"])
    return LedgerAccount(
        account_id=row[prefix + "account_id"],
        currency=row[prefix + "currency"],
        key=AccountKey(kind, row[prefix + "office_id"], row[prefix + "period_start"]),
        balance=row[prefix + "balance"],
    )


@dataclass(frozen=True, slots=True)
class Loaded:
    """Accounts loaded (and created if new) for one transaction."""

    balances: dict[AccountKey, int]
    ids: dict[AccountKey, int]
    created: frozenset[AccountKey]


@dataclass(frozen=True, slots=True)
class UsageFilter:
    company_id: uuid.UUID
    office_id: uuid.UUID | None = None
    kind: UsageKind | None = None
    currency: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class CheckedAccount:
    """An account with the sums CheckLedger compares its balance with."""

    account: LedgerAccount
    entries_sum: int
    usage_sum: int | None  # CONSUMED accounts: the amounts of the office's usage records


# --- statements -------------------------------------------------------------------------

# The first statement of a writer's transaction: the lock, and the transaction's instant.
LOCK = """
SELECT coalesce($2::timestamptz, now())
FROM pg_advisory_xact_lock(hashtextextended('credits/' || $1::text, 0))
"""

# Loads the accounts a transaction touches, creating the missing ones that it asks to
# create (balance 0). The main query does not see the CTE's inserts, so each account
# comes back at most once.
LOAD_ACCOUNTS = """
WITH wanted AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::uuid[], $6::timestamptz[], $8::bool[])
        AS w(code, kind, office_id, period_start, create_it)
), created AS (
    INSERT INTO credits.ledger_accounts
        (company_id, currency, code, kind, office_id, period_start, created_at)
    SELECT $1, $2, code, kind, office_id, period_start, $7 FROM wanted WHERE create_it
    ON CONFLICT (company_id, currency, code) DO NOTHING
    RETURNING account_id, code, balance
)
SELECT account_id, code, balance, true AS created FROM created
UNION ALL
SELECT a.account_id, a.code, a.balance, false FROM credits.ledger_accounts a
    JOIN wanted w ON a.code = w.code
WHERE a.company_id = $1 AND a.currency = $2
"""

INSERT_ENTRIES = """
INSERT INTO credits.entries (company_id, currency, kind, debit_account_id, credit_account_id,
    amount, usage_id, grant_id, created_at)
SELECT $1, $2, e.kind, e.debit, e.credit, e.amount, e.usage_id, e.grant_id, $9
FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::uuid[], $8::uuid[])
    WITH ORDINALITY AS e(kind, debit, credit, amount, usage_id, grant_id, n)
ORDER BY e.n
"""

# One update per account per transaction; the CHECK constraint refuses a balance below
# zero, so a wrong computation fails the transaction instead of corrupting the ledger.
UPDATE_BALANCES = """
UPDATE credits.ledger_accounts a SET balance = a.balance + d.delta
FROM unnest($1::bigint[], $2::bigint[]) AS d(account_id, delta)
WHERE a.account_id = d.account_id
"""

INSERT_USAGE = f"""
INSERT INTO credits.usage_records ({USAGE_COLUMNS})
SELECT u.usage_id, u.request_id, $2::uuid, u.office_id, u.kind, u.currency, u.amount,
    u.occurred_at, u.period_start, u.period_end, u.from_allowance, u.from_office_balance,
    u.from_company_pool, u.from_ai_agent_credits, u.overage, u.recorded_at
FROM unnest(
    $1::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::bigint[],
    $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::bigint[], $12::bigint[],
    $13::bigint[], $14::bigint[], $15::bigint[], $16::timestamptz[])
    AS u(usage_id, request_id, office_id, kind, currency, amount, occurred_at, period_start,
         period_end, from_allowance, from_office_balance, from_company_pool,
         from_ai_agent_credits, overage, recorded_at)
"""

USAGE_TOTALS = """
SELECT currency, office_id, count(*) AS n, sum(amount) AS amount,
    sum(from_allowance) AS from_allowance, sum(from_office_balance) AS from_office_balance,
    sum(from_company_pool) AS from_company_pool,
    sum(from_ai_agent_credits) AS from_ai_agent_credits, sum(overage) AS overage,
    grouping(office_id) = 1 AS company_total
FROM credits.usage_records
WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2) AND ($3::text IS NULL OR kind = $3)
  AND ($4::timestamptz IS NULL OR occurred_at >= $4)
  AND ($5::timestamptz IS NULL OR occurred_at < $5)
GROUP BY GROUPING SETS ((currency, office_id), (currency))
ORDER BY currency, office_id NULLS LAST
"""

ACCOUNT_COLUMNS = "account_id, currency, kind, office_id, period_start, balance"

CHECK_ACCOUNTS = f"""
SELECT {", ".join("a." + c.strip() for c in ACCOUNT_COLUMNS.split(","))},
    (coalesce(cr.total, 0) - coalesce(dr.total, 0))::bigint AS entries_sum,
    CASE WHEN a.kind = 'CONSUMED' THEN coalesce(u.total, 0)::bigint END AS usage_sum
FROM credits.ledger_accounts a
LEFT JOIN (SELECT credit_account_id AS id, sum(amount) AS total FROM credits.entries
           WHERE company_id = $1 GROUP BY credit_account_id) cr ON cr.id = a.account_id
LEFT JOIN (SELECT debit_account_id AS id, sum(amount) AS total FROM credits.entries
           WHERE company_id = $1 GROUP BY debit_account_id) dr ON dr.id = a.account_id
LEFT JOIN (SELECT office_id, currency, sum(amount) AS total FROM credits.usage_records
           WHERE company_id = $1 GROUP BY office_id, currency) u
    ON a.kind = 'CONSUMED' AND u.office_id = a.office_id AND u.currency = a.currency
WHERE a.company_id = $1
ORDER BY a.account_id
"""

LIST_ENTRIES = """
SELECT e.entry_id, e.kind AS entry_kind, e.currency AS entry_currency, e.amount, e.usage_id,
    e.grant_id, e.created_at,
    d.account_id AS d_account_id, d.currency AS d_currency, d.kind AS d_kind,
    d.office_id AS d_office_id, d.period_start AS d_period_start, d.balance AS d_balance,
    c.account_id AS c_account_id, c.currency AS c_currency, c.kind AS c_kind,
    c.office_id AS c_office_id, c.period_start AS c_period_start, c.balance AS c_balance
FROM credits.entries e
JOIN credits.ledger_accounts d ON d.account_id = e.debit_account_id
JOIN credits.ledger_accounts c ON c.account_id = e.credit_account_id
WHERE e.company_id = $1 AND ($2::uuid IS NULL OR d.office_id = $2 OR c.office_id = $2)
  AND ($3::text IS NULL OR e.currency = $3) AND ($4::uuid IS NULL OR e.usage_id = $4)
  AND ($5::bigint IS NULL OR e.entry_id > $5)
ORDER BY e.entry_id LIMIT $6
"""


class CreditsRepository:
    """The SQL of the credits service; every method takes the caller's connection."""

    # --- locks and time -----------------------------------------------------------------

    async def lock(
        self, conn: Conn, company_id: uuid.UUID, currency: str, clock_now: datetime | None
    ) -> datetime:
        """Serializes writers of one (company, currency) until the transaction ends;
        returns the transaction's instant (the clock's, or the database's)."""
        now: datetime = await conn.fetchval(LOCK, f"{company_id}/{currency}", clock_now)
        return now

    async def now(self, conn: Conn, clock_now: datetime | None) -> datetime:
        value: datetime = await conn.fetchval("SELECT coalesce($1::timestamptz, now())", clock_now)
        return value

    # --- offices ------------------------------------------------------------------------

    async def office_owner(self, conn: Conn, office_id: uuid.UUID) -> uuid.UUID | None:
        value: uuid.UUID | None = await conn.fetchval(
            "SELECT company_id FROM credits.offices WHERE office_id = $1", office_id
        )
        return value

    async def get_office(
        self, conn: Conn, company_id: uuid.UUID, office_id: uuid.UUID
    ) -> OfficeAccount | None:
        row = await conn.fetchrow(
            f"SELECT {OFFICE_COLUMNS} FROM credits.offices"
            " WHERE company_id = $1 AND office_id = $2",
            company_id,
            office_id,
        )
        return to_office(row) if row else None

    async def offices_and_primary(
        self, conn: Conn, company_id: uuid.UUID, office_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, OfficeAccount], OfficeAccount | None]:
        """The named offices, and the company's primary office (if any)."""
        rows = await conn.fetch(
            f"SELECT {OFFICE_COLUMNS} FROM credits.offices"
            " WHERE company_id = $1 AND (office_id = ANY($2::uuid[]) OR is_primary)",
            company_id,
            list(office_ids),
        )
        offices = [to_office(r) for r in rows]
        primary = next((o for o in offices if o.primary), None)
        wanted = set(office_ids)
        return {o.office_id: o for o in offices if o.office_id in wanted}, primary

    async def put_office(self, conn: Conn, office: OfficeAccount, now: datetime) -> OfficeAccount:
        if office.primary:
            await conn.execute(
                "UPDATE credits.offices SET is_primary = false, updated_at = $3"
                " WHERE company_id = $1 AND is_primary AND office_id <> $2",
                office.company_id,
                office.office_id,
                now,
            )
        row = await conn.fetchrow(
            f"""
            INSERT INTO credits.offices ({OFFICE_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
            ON CONFLICT (office_id) DO UPDATE SET currency = EXCLUDED.currency,
                is_primary = EXCLUDED.is_primary, allowance = EXCLUDED.allowance,
                period_anchor = EXCLUDED.period_anchor,
                overage_policy = EXCLUDED.overage_policy, updated_at = EXCLUDED.updated_at
            RETURNING {OFFICE_COLUMNS}
            """,
            office.company_id,
            office.office_id,
            office.currency,
            office.primary,
            office.allowance,
            office.period_anchor,
            office.overage_policy.value,
            now,
        )
        return to_office(row)

    async def list_offices(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        currency: str | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[OfficeAccount]:
        rows = await conn.fetch(
            f"""
            SELECT {OFFICE_COLUMNS} FROM credits.offices
            WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2)
              AND ($3::uuid IS NULL OR office_id > $3)
            ORDER BY office_id LIMIT $4
            """,
            company_id,
            currency,
            after,
            limit,
        )
        return [to_office(r) for r in rows]

    async def office_has_ledger(self, conn: Conn, office_id: uuid.UUID) -> bool:
        """Whether anything was ever charged or granted to the office."""
        found: bool = await conn.fetchval(
            """
            SELECT EXISTS (SELECT 1 FROM credits.usage_records WHERE office_id = $1)
                OR EXISTS (SELECT 1 FROM credits.grants WHERE office_id = $1)
                OR EXISTS (SELECT 1 FROM credits.ledger_accounts
                           WHERE office_id = $1 AND balance <> 0)
            """,
            office_id,
        )
        return found

    # --- pooling ------------------------------------------------------------------------

    async def get_pooling(self, conn: Conn, company_id: uuid.UUID, currency: str) -> Pooling:
        row = await conn.fetchrow(
            "SELECT enabled, updated_at FROM credits.pooling"
            " WHERE company_id = $1 AND currency = $2",
            company_id,
            currency,
        )
        if row is None:
            return Pooling(company_id, currency, False, None)
        return Pooling(company_id, currency, row["enabled"], row["updated_at"])

    async def company_pooling(
        self, conn: Conn, company_id: uuid.UUID, currency: str | None
    ) -> list[Pooling]:
        rows = await conn.fetch(
            "SELECT currency, enabled, updated_at FROM credits.pooling"
            " WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2)",
            company_id,
            currency,
        )
        return [Pooling(company_id, r["currency"], r["enabled"], r["updated_at"]) for r in rows]

    async def set_pooling(
        self, conn: Conn, company_id: uuid.UUID, currency: str, enabled: bool, now: datetime
    ) -> Pooling:
        await conn.execute(
            """
            INSERT INTO credits.pooling (company_id, currency, enabled, updated_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (company_id, currency) DO UPDATE
                SET enabled = EXCLUDED.enabled, updated_at = EXCLUDED.updated_at
            """,
            company_id,
            currency,
            enabled,
            now,
        )
        return Pooling(company_id, currency, enabled, now)

    async def offices_of_currency(
        self, conn: Conn, company_id: uuid.UUID, currency: str
    ) -> list[uuid.UUID]:
        rows = await conn.fetch(
            "SELECT office_id FROM credits.offices WHERE company_id = $1 AND currency = $2"
            " ORDER BY office_id",
            company_id,
            currency,
        )
        return [r["office_id"] for r in rows]

    # --- the ledger ---------------------------------------------------------------------

    async def load_accounts(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        currency: str,
        keys: Iterable[AccountKey],
        now: datetime,
        lookup_only: Iterable[AccountKey] = (),
    ) -> Loaded:
        """The balances of `keys`, creating missing accounts with balance 0, and of those
        accounts of `lookup_only` that exist."""
        by_code = {key.code: key for key in keys}
        only = {key.code: key for key in lookup_only if key.code not in by_code}
        wanted = [*by_code.values(), *only.values()]
        by_code.update(only)
        rows = await conn.fetch(
            LOAD_ACCOUNTS,
            company_id,
            currency,
            [k.code for k in wanted],
            [k.kind.value for k in wanted],
            [k.office_id for k in wanted],
            [k.period_start for k in wanted],
            now,
            [k.code not in only for k in wanted],
        )
        balances, ids, created = {}, {}, set()
        for row in rows:
            key = by_code[row["code"]]
            balances[key] = row["balance"]
            ids[key] = row["account_id"]
            if row["created"]:
                created.add(key)
        assert len(ids) >= len(wanted) - len(only)
        return Loaded(balances, ids, frozenset(created))

    async def apply(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        currency: str,
        ids: dict[AccountKey, int],
        postings: Sequence[Posting],
        deltas: dict[AccountKey, int],
        now: datetime,
    ) -> None:
        """Appends the entries and moves the balances by the same amounts."""
        if not postings:
            return
        await conn.execute(
            INSERT_ENTRIES,
            company_id,
            currency,
            [p.kind.value for p in postings],
            [ids[p.debit] for p in postings],
            [ids[p.credit] for p in postings],
            [p.amount for p in postings],
            [p.usage_id for p in postings],
            [p.grant_id for p in postings],
            now,
        )
        changed = sorted(deltas.items(), key=lambda item: ids[item[0]])
        result: str = await conn.execute(
            UPDATE_BALANCES, [ids[k] for k, _ in changed], [d for _, d in changed]
        )
        assert int(result.split()[-1]) == len(changed), result

    async def company_accounts(
        self, conn: Conn, company_id: uuid.UUID, currency: str | None, kinds: Sequence[AccountKind]
    ) -> list[LedgerAccount]:
        rows = await conn.fetch(
            f"SELECT {ACCOUNT_COLUMNS} FROM credits.ledger_accounts"
            " WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2)"
            " AND kind = ANY($3::text[])",
            company_id,
            currency,
            [k.value for k in kinds],
        )
        return [to_account(r) for r in rows]

    async def accounts_by_code(
        self, conn: Conn, company_id: uuid.UUID, pairs: Sequence[tuple[str, str]]
    ) -> list[LedgerAccount]:
        """Accounts by (currency, code)."""
        rows = await conn.fetch(
            f"""
            SELECT {", ".join("a." + c.strip() for c in ACCOUNT_COLUMNS.split(","))}
            FROM credits.ledger_accounts a
            JOIN unnest($2::text[], $3::text[]) AS w(currency, code)
                ON a.currency = w.currency AND a.code = w.code
            WHERE a.company_id = $1
            """,
            company_id,
            [c for c, _ in pairs],
            [code for _, code in pairs],
        )
        return [to_account(r) for r in rows]

    async def check_accounts(self, conn: Conn, company_id: uuid.UUID) -> list[CheckedAccount]:
        rows = await conn.fetch(CHECK_ACCOUNTS, company_id)
        return [CheckedAccount(to_account(r), r["entries_sum"], r["usage_sum"]) for r in rows]

    async def count_entries(self, conn: Conn, company_id: uuid.UUID) -> int:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM credits.entries WHERE company_id = $1", company_id
        )
        return count

    async def list_entries(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        currency: str | None,
        usage_id: uuid.UUID | None,
        after: int | None,
        limit: int,
    ) -> list[LedgerEntry]:
        rows = await conn.fetch(
            LIST_ENTRIES, company_id, office_id, currency, usage_id, after, limit
        )
        return [
            LedgerEntry(
                entry_id=r["entry_id"],
                kind=EntryKind(r["entry_kind"]),
                currency=r["entry_currency"],
                debit=to_account(r, "d_"),
                credit=to_account(r, "c_"),
                amount=r["amount"],
                usage_id=r["usage_id"],
                grant_id=r["grant_id"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    # --- grants and usage ---------------------------------------------------------------

    async def insert_grant(self, conn: Conn, grant: Grant) -> None:
        await conn.execute(
            """
            INSERT INTO credits.grants (grant_id, company_id, target, office_id, currency,
                amount, note, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            grant.grant_id,
            grant.company_id,
            grant.target.value,
            grant.office_id,
            grant.currency,
            grant.amount,
            grant.note,
            grant.created_at,
        )

    async def insert_usage(
        self, conn: Conn, company_id: uuid.UUID, records: Sequence[UsageRecord]
    ) -> None:
        if not records:
            return
        columns: list[list[Any]] = [[] for _ in range(15)]
        for r in records:
            values = (
                r.usage_id,
                r.request_id,
                r.office_id,
                r.kind.value,
                r.currency,
                r.amount,
                r.occurred_at,
                r.period.start,
                r.period.end,
                r.split.allowance,
                r.split.office_balance,
                r.split.company_pool,
                r.split.ai_agent_credits,
                r.split.overage,
                r.recorded_at,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        await conn.execute(INSERT_USAGE, columns[0], company_id, *columns[1:])

    async def get_usage(
        self, conn: Conn, company_id: uuid.UUID, usage_id: uuid.UUID
    ) -> UsageRecord | None:
        row = await conn.fetchrow(
            f"SELECT {USAGE_COLUMNS} FROM credits.usage_records"
            " WHERE company_id = $1 AND usage_id = $2",
            company_id,
            usage_id,
        )
        return to_usage(row) if row else None

    async def list_usage(
        self,
        conn: Conn,
        where: UsageFilter,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[UsageRecord]:
        rows = await conn.fetch(
            f"""
            SELECT {USAGE_COLUMNS} FROM credits.usage_records
            WHERE company_id = $1 AND ($2::uuid IS NULL OR office_id = $2)
              AND ($3::text IS NULL OR kind = $3) AND ($4::text IS NULL OR currency = $4)
              AND ($5::timestamptz IS NULL OR occurred_at >= $5)
              AND ($6::timestamptz IS NULL OR occurred_at < $6)
              AND ($7::timestamptz IS NULL OR (occurred_at, usage_id) > ($7, $8::uuid))
            ORDER BY occurred_at, usage_id LIMIT $9
            """,
            where.company_id,
            where.office_id,
            where.kind.value if where.kind else None,
            where.currency,
            where.start,
            where.end,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [to_usage(r) for r in rows]

    async def usage_totals(
        self,
        conn: Conn,
        company_id: uuid.UUID,
        currency: str | None,
        kind: UsageKind | None,
        start: datetime | None,
        end: datetime | None,
    ) -> tuple[list[UsageTotal], list[UsageTotal]]:
        """Totals per (currency, office) and per currency, from one statement."""
        rows = await conn.fetch(
            USAGE_TOTALS, company_id, currency, kind.value if kind else None, start, end
        )
        offices: list[UsageTotal] = []
        companies: list[UsageTotal] = []
        for r in rows:
            total = UsageTotal(
                office_id=None if r["company_total"] else r["office_id"],
                currency=r["currency"],
                count=r["n"],
                amount=int(r["amount"]),
                split=Split(
                    allowance=int(r["from_allowance"]),
                    office_balance=int(r["from_office_balance"]),
                    company_pool=int(r["from_company_pool"]),
                    ai_agent_credits=int(r["from_ai_agent_credits"]),
                    overage=int(r["overage"]),
                ),
            )
            (companies if r["company_total"] else offices).append(total)
        return offices, companies
