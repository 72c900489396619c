"""The writers' lock, ledger accounts and entries, grants, and the ledger check."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs.common.clock import Clock
from libs.common.key_locks import lock_keys
from services.credits.domain.model import (
    AccountKey,
    AccountKind,
    EntryKind,
    Grant,
    LedgerAccount,
    LedgerEntry,
    Posting,
)

ACCOUNT_COLUMNS = "account_id, currency, kind, office_id, period_start, balance"
_A_ACCOUNT_COLUMNS = ", ".join("a." + c.strip() for c in ACCOUNT_COLUMNS.split(","))

# The first statement of a writer's transaction: the lock, and the transaction's instant.
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
FROM unnest($2::bigint[], $3::bigint[]) AS d(account_id, delta)
WHERE a.company_id = $1 AND a.account_id = d.account_id
"""

CHECK_ACCOUNTS = f"""
SELECT {_A_ACCOUNT_COLUMNS},
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
JOIN credits.ledger_accounts d
    ON d.company_id = e.company_id AND d.account_id = e.debit_account_id
JOIN credits.ledger_accounts c
    ON c.company_id = e.company_id AND c.account_id = e.credit_account_id
WHERE e.company_id = $1 AND ($2::uuid IS NULL OR d.office_id = $2 OR c.office_id = $2)
  AND ($3::text IS NULL OR e.currency = $3) AND ($4::uuid IS NULL OR e.usage_id = $4)
  AND ($5::bigint IS NULL OR e.entry_id > $5)
ORDER BY e.entry_id LIMIT $6
"""


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


@dataclass(frozen=True, slots=True)
class CheckedAccount:
    """An account with the sums CheckLedger compares its balance with."""

    account: LedgerAccount
    entries_sum: int
    usage_sum: int | None  # CONSUMED accounts: the amounts of the office's usage records


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Which entries ListLedgerEntries lists, after which entry id."""

    company_id: uuid.UUID
    office_id: uuid.UUID | None = None
    currency: str | None = None
    usage_id: uuid.UUID | None = None


class LedgerRepository:
    """The ledger of the service's companies, on one connection; `clock` gives the
    instant of its writes (None from the clock: the database's)."""

    def __init__(self, conn: asyncpg.Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock

    # --- the lock and the instant -------------------------------------------------------

    async def lock(self, company_id: uuid.UUID, currency: str) -> datetime:
        """Serializes writers of one (company, currency) until the transaction ends;
        returns the transaction's instant."""
        return await self.lock_all([(company_id, currency)])

    async def lock_all(self, keys: Sequence[tuple[uuid.UUID, str]]) -> datetime:
        """`lock` for several (company, currency) keys at once (`libs.common.key_locks`)."""
        return await lock_keys(self._conn, "credits", keys, self._clock.sql_now())

    async def now(self) -> datetime:
        value: datetime = await self._conn.fetchval(
            "SELECT coalesce($1::timestamptz, now())", self._clock.sql_now()
        )
        return value

    # --- writes -------------------------------------------------------------------------

    async def load(
        self,
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
        rows = await self._conn.fetch(
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
        balances, ids = {}, {}
        for row in rows:
            key = by_code[row["code"]]
            balances[key] = row["balance"]
            ids[key] = row["account_id"]
        assert len(ids) >= len(wanted) - len(only)
        return Loaded(balances, ids)

    async def apply(
        self,
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
        await self._conn.execute(
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
        result: str = await self._conn.execute(
            UPDATE_BALANCES, company_id, [ids[k] for k, _ in changed], [d for _, d in changed]
        )
        assert int(result.split()[-1]) == len(changed), result

    async def insert_grant(self, grant: Grant) -> None:
        await self._conn.execute(
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

    # --- reads --------------------------------------------------------------------------

    async def of_kinds(
        self, company_id: uuid.UUID, currency: str | None, kinds: Sequence[AccountKind]
    ) -> list[LedgerAccount]:
        """The company's accounts of these kinds (of one currency, or all)."""
        rows = await self._conn.fetch(
            f"SELECT {ACCOUNT_COLUMNS} FROM credits.ledger_accounts"
            " WHERE company_id = $1 AND ($2::text IS NULL OR currency = $2)"
            " AND kind = ANY($3::text[])",
            company_id,
            currency,
            [k.value for k in kinds],
        )
        return [to_account(r) for r in rows]

    async def by_key(
        self, company_id: uuid.UUID, wanted: Sequence[tuple[str, AccountKey]]
    ) -> list[LedgerAccount]:
        """The accounts of these (currency, account) that exist."""
        rows = await self._conn.fetch(
            f"""
            SELECT {_A_ACCOUNT_COLUMNS}
            FROM credits.ledger_accounts a
            JOIN unnest($2::text[], $3::text[]) AS w(currency, code)
                ON a.currency = w.currency AND a.code = w.code
            WHERE a.company_id = $1
            """,
            company_id,
            [currency for currency, _ in wanted],
            [key.code for _, key in wanted],
        )
        return [to_account(r) for r in rows]

    async def checked(self, company_id: uuid.UUID) -> list[CheckedAccount]:
        """Every account of the company, with the sums of its entries and usage."""
        rows = await self._conn.fetch(CHECK_ACCOUNTS, company_id)
        return [CheckedAccount(to_account(r), r["entries_sum"], r["usage_sum"]) for r in rows]

    async def count_entries(self, company_id: uuid.UUID) -> int:
        count: int = await self._conn.fetchval(
            "SELECT count(*) FROM credits.entries WHERE company_id = $1", company_id
        )
        return count

    async def entries(self, where: EntryFilter, after: int | None, limit: int) -> list[LedgerEntry]:
        rows = await self._conn.fetch(
            LIST_ENTRIES,
            where.company_id,
            where.office_id,
            where.currency,
            where.usage_id,
            after,
            limit,
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
