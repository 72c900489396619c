"""The distribution rule (docs/distribution.md), read from the catalog of a database.

Every table of the services' schemas is distributed by `company_id`, except the few that
hold global data (reference tables, copied to every node) and Alembic's version tables
(the coordinator's own). A distributed table:

- has a NOT NULL `company_id` column and a primary key that contains it;
- has `company_id` among the columns of every unique or exclusion constraint and of every
  unique index (partial and expression indexes included), since a shard can only check
  uniqueness within itself;
- has every foreign key either to a reference table or to a distributed table with
  `company_id` referencing `company_id`, so both rows live on the same shard.

A reference table has a primary key and no foreign key to a distributed table.

`violations` names every table and constraint that breaks the rule; `ddl` is the
statements that distribute the tables, in an order that satisfies their foreign keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

SCHEMAS = ("pool", "credits", "billing", "provisioning")
COLUMN = "company_id"
# Global data: which company an office id belongs to, for every company.
REFERENCE_TABLES = frozenset({"pool.office_owners", "credits.office_owners"})
# The first distributed table; every other one is colocated with it.
ANCHOR = "pool.offices"


def local_tables(schemas: Sequence[str]) -> frozenset[str]:
    """Alembic's version table of each schema stays on the coordinator."""
    return frozenset(f"{schema}.alembic_version" for schema in schemas)


TABLES = """
SELECT c.oid, n.nspname || '.' || c.relname AS name,
    (SELECT a.attnum FROM pg_attribute a
     WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped) AS key_column,
    (SELECT a.attnotnull FROM pg_attribute a
     WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped) AS key_not_null
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY name
"""
CONSTRAINTS = """
SELECT con.conrelid AS table_oid, con.conname AS name, con.contype::text AS kind,
    con.conkey::int[] AS columns, con.confrelid AS referenced_oid,
    con.confkey::int[] AS referenced_columns
FROM pg_constraint con
WHERE con.conrelid = ANY($1::oid[]) AND con.contype IN ('p', 'u', 'x', 'f')
ORDER BY con.conname
"""
# Unique indexes that no constraint owns (CREATE UNIQUE INDEX, partial or on expressions).
UNIQUE_INDEXES = """
SELECT i.indrelid AS table_oid, ic.relname AS name, i.indkey::int[] AS columns
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = ANY($1::oid[]) AND i.indisunique
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid
                  AND con.conrelid = i.indrelid)
ORDER BY ic.relname
"""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    key_column: int | None  # attnum of company_id, None when the table has none
    key_not_null: bool


@dataclass(frozen=True, slots=True)
class Catalog:
    """What the rule reads: the tables, their keys and foreign keys."""

    tables: dict[int, Table]
    constraints: list[asyncpg.Record]
    unique_indexes: list[asyncpg.Record]

    def name_of(self, oid: int) -> str | None:
        table = self.tables.get(oid)
        return table.name if table else None


async def read_catalog(conn: asyncpg.Connection, schemas: Sequence[str]) -> Catalog:
    rows = await conn.fetch(TABLES, list(schemas), COLUMN)
    tables = {r["oid"]: Table(r["name"], r["key_column"], bool(r["key_not_null"])) for r in rows}
    oids = list(tables)
    return Catalog(
        tables,
        list(await conn.fetch(CONSTRAINTS, oids)),
        list(await conn.fetch(UNIQUE_INDEXES, oids)),
    )


def check(
    catalog: Catalog,
    reference: frozenset[str] = REFERENCE_TABLES,
    local: frozenset[str] = frozenset(),
) -> list[str]:
    """One line per table or constraint that breaks the rule (empty: the schema obeys)."""
    found: list[str] = []
    by_table: dict[int, list[asyncpg.Record]] = {}
    for con in catalog.constraints:
        by_table.setdefault(con["table_oid"], []).append(con)
    for oid, table in catalog.tables.items():
        if table.name in local:
            continue
        constraints = by_table.get(oid, [])
        if table.name in reference:
            found += _check_reference(catalog, table, constraints, reference)
        else:
            found += _check_distributed(catalog, table, constraints, reference)
    for index in catalog.unique_indexes:
        table = catalog.tables[index["table_oid"]]
        if table.name in reference or table.name in local:
            continue
        if table.key_column not in index["columns"]:
            found.append(f"{table.name}: unique index {index['name']} lacks {COLUMN}")
    return found


def _check_reference(
    catalog: Catalog, table: Table, constraints: list[asyncpg.Record], reference: frozenset[str]
) -> list[str]:
    found = []
    if not any(con["kind"] == "p" for con in constraints):
        found.append(f"{table.name}: reference table without a primary key")
    for con in constraints:
        target = catalog.name_of(con["referenced_oid"])
        if con["kind"] == "f" and target is not None and target not in reference:
            found.append(
                f"{table.name}: foreign key {con['name']} of a reference table points at"
                f" the distributed table {target}"
            )
    return found


def _check_distributed(
    catalog: Catalog, table: Table, constraints: list[asyncpg.Record], reference: frozenset[str]
) -> list[str]:
    if table.key_column is None:
        return [f"{table.name}: no {COLUMN} column (distributed tables need it)"]
    found = []
    if not table.key_not_null:
        found.append(f"{table.name}: {COLUMN} may be NULL")
    if not any(con["kind"] == "p" for con in constraints):
        found.append(f"{table.name}: no primary key")
    for con in constraints:
        what = {"p": "primary key", "u": "unique key", "x": "exclusion constraint"}.get(
            con["kind"], "foreign key"
        )
        if con["kind"] != "f":
            if table.key_column not in con["columns"]:
                found.append(f"{table.name}: {what} {con['name']} lacks {COLUMN}")
            continue
        target_oid = con["referenced_oid"]
        target = catalog.tables.get(target_oid)
        if target is not None and target.name in reference:
            continue
        pairs = dict(zip(con["columns"], con["referenced_columns"], strict=True))
        if target is None or pairs.get(table.key_column) != target.key_column:
            found.append(
                f"{table.name}: foreign key {con['name']} does not join {COLUMN} to"
                f" {COLUMN} of {target.name if target else 'a table outside the schemas'}"
            )
    return found


async def violations(
    conn: asyncpg.Connection,
    schemas: Sequence[str] = SCHEMAS,
    reference: frozenset[str] = REFERENCE_TABLES,
) -> list[str]:
    """What breaks the rule in the schemas of the connection's database."""
    return check(await read_catalog(conn, schemas), reference, local_tables(schemas))


def ddl(catalog: Catalog, reference: frozenset[str] = REFERENCE_TABLES) -> list[str]:
    """The statements that distribute every table, referenced tables before the tables that
    point at them (Citus adds a foreign key only between tables it already manages)."""
    depends: dict[str, set[str]] = {t.name: set() for t in catalog.tables.values()}
    for con in catalog.constraints:
        source, target = catalog.name_of(con["table_oid"]), catalog.name_of(con["referenced_oid"])
        if con["kind"] == "f" and source and target and source != target:
            depends[source].add(target)
    local = local_tables(SCHEMAS)
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for target in sorted(depends[name]):
            visit(target)
        order.append(name)

    for name in [*sorted(reference), ANCHOR, *sorted(depends)]:
        if name in depends and name not in local:
            visit(name)
    statements = []
    for name in order:
        if name in reference:
            statements.append(f"SELECT create_reference_table('{name}');")
        elif name == ANCHOR:
            statements.append(f"SELECT create_distributed_table('{name}', '{COLUMN}');")
        else:
            statements.append(
                f"SELECT create_distributed_table('{name}', '{COLUMN}',"
                f" colocate_with => '{ANCHOR}');"
            )
    return statements
