"""Whether anything was written to the database: row counts of every table of every
schema, and rows inserted or updated since a point in time (by their xmin)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""
# One past the last transaction id that ended when the snapshot was taken: every row a
# later transaction writes has an xmin at or past it (xmin is the low 32 bits of the id),
# and while it stays the same, no transaction that could have written anything has ended.
_MARKER = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, int]  # table -> row count
    marker: int  # transaction id: rows written after this snapshot have xmin >= marker


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TableWatch:
    def __init__(self, db: asyncpg.Pool, tables: list[str], query: str) -> None:
        self._db = db
        self.tables = tables
        self._query = query

    @classmethod
    async def of(cls, db: asyncpg.Pool) -> TableWatch:
        """Watches every table of every schema in the database."""
        found = await db.fetch(_TABLES)
        tables = [f"{r['nspname']}.{r['relname']}" for r in found]
        parts = [
            f"SELECT {i} AS i, count(*) AS n, "
            f"count(*) FILTER (WHERE xmin::text::bigint >= $1::bigint) AS written "
            f"FROM {_quote(r['nspname'])}.{_quote(r['relname'])}"
            for i, r in enumerate(found)
        ]
        return cls(db, tables, " UNION ALL ".join(parts))

    async def snapshot(self) -> Snapshot:
        after, _ = await self.changes_since(None)
        return after

    async def changes_since(self, before: Snapshot | None) -> tuple[Snapshot, list[str]]:
        """The database now, and what changed since `before`: tables whose row count moved,
        and tables with rows written (inserted or updated) after it."""
        async with self._db.acquire() as conn:
            if before is not None and await conn.fetchval(_MARKER) == before.marker:
                # No transaction that got an id since has ended: nothing can have been
                # written (a write needs a transaction id), the tables need no scan.
                return before, []
        async with (
            self._db.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            marker = await conn.fetchval(_MARKER)
            since = (before.marker if before else marker) % 2**32
            found = await conn.fetch(self._query, since)
        rows = {self.tables[r["i"]]: r["n"] for r in found}
        after = Snapshot(rows, marker)
        if before is None:
            return after, []
        changes = []
        for r in found:
            table = self.tables[r["i"]]
            if rows[table] != before.rows.get(table):
                changes.append(f"{table}: {before.rows.get(table)} -> {rows[table]} rows")
            elif r["written"]:
                changes.append(f"{table}: {r['written']} rows written")
        return after, changes

    async def settled(self, pause: float = 0.2, attempts: int = 25) -> Snapshot:
        """A snapshot once nothing has been written for `pause` seconds (work a successful
        call left running in the background, such as an import, has ended)."""
        current = await self.snapshot()
        for _ in range(attempts):
            await asyncio.sleep(pause)
            after, changes = await self.changes_since(current)
            if not changes:
                return after
            current = after
        return current
