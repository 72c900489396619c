"""The schema obeys the distribution rule (docs/distribution.md): read from the catalog of
a fully migrated database, every table of every service is keyed by company_id or is a
declared reference table. The rule's check is itself checked on tables built to break it,
and docs/distribution.md holds exactly the DDL that distributes the migrated schema."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

from libs.common.database import plain_url
from tests.support import distribution
from tests.support.database import fresh_database

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

DOC = Path(__file__).resolve().parents[2] / "docs" / "distribution.md"

# Reference tables first (distributed ones point at them), and one that breaks the rule.
CATALOGS = """
CREATE TABLE scratch.catalog (code text PRIMARY KEY);
CREATE TABLE scratch.keyless_catalog (code text);
"""
# Tables made to break the rule, each in one way, and some that keep it.
BAD_TABLES = """
CREATE TABLE scratch.no_company (id uuid PRIMARY KEY);
CREATE TABLE scratch.no_primary_key (company_id uuid NOT NULL, id uuid);
CREATE TABLE scratch.id_only_key (id uuid PRIMARY KEY, company_id uuid NOT NULL);
CREATE TABLE scratch.good (
    company_id uuid NOT NULL, id uuid NOT NULL, code text NOT NULL,
    PRIMARY KEY (company_id, id), UNIQUE (company_id, code)
);
CREATE TABLE scratch.global_code (
    company_id uuid NOT NULL, id uuid NOT NULL, code text NOT NULL,
    PRIMARY KEY (company_id, id), CONSTRAINT global_code_code_key UNIQUE (code)
);
CREATE UNIQUE INDEX good_code_when_set ON scratch.good (code) WHERE code <> '';
CREATE TABLE scratch.excluded (
    company_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (company_id, id),
    CONSTRAINT excluded_by_id EXCLUDE USING btree (id WITH =)
);
CREATE TABLE scratch.points_by_id (
    company_id uuid NOT NULL, id uuid NOT NULL, target uuid NOT NULL,
    PRIMARY KEY (company_id, id),
    CONSTRAINT points_by_id_target_fkey FOREIGN KEY (target) REFERENCES scratch.id_only_key
);
CREATE TABLE scratch.points_crossed (
    company_id uuid NOT NULL, id uuid NOT NULL, target uuid NOT NULL,
    PRIMARY KEY (company_id, id),
    CONSTRAINT points_crossed_fkey FOREIGN KEY (company_id, target)
        REFERENCES scratch.good (id, company_id)
);
CREATE TABLE scratch.points_well (
    company_id uuid NOT NULL, id uuid NOT NULL, target uuid NOT NULL, ref text,
    PRIMARY KEY (company_id, id),
    FOREIGN KEY (company_id, target) REFERENCES scratch.good (company_id, id),
    FOREIGN KEY (ref) REFERENCES scratch.catalog (code)
);
CREATE TABLE scratch.nullable_company (company_id uuid, id uuid NOT NULL,
    CONSTRAINT nullable_company_id_key UNIQUE (company_id, id));
"""
REFERENCE_TO_DISTRIBUTED = """
CREATE TABLE scratch.catalog_of_goods (
    code text PRIMARY KEY, company_id uuid NOT NULL, id uuid NOT NULL,
    CONSTRAINT catalog_of_goods_fkey FOREIGN KEY (company_id, id)
        REFERENCES scratch.good (company_id, id)
);
"""
SCRATCH_REFERENCE = frozenset(
    {"scratch.catalog", "scratch.keyless_catalog", "scratch.catalog_of_goods"}
)
EXPECTED = {
    "scratch.no_company: no company_id column (distributed tables need it)",
    "scratch.no_primary_key: no primary key",
    "scratch.id_only_key: primary key id_only_key_pkey lacks company_id",
    "scratch.global_code: unique key global_code_code_key lacks company_id",
    "scratch.good: unique index good_code_when_set lacks company_id",
    "scratch.excluded: exclusion constraint excluded_by_id lacks company_id",
    "scratch.points_by_id: foreign key points_by_id_target_fkey does not join company_id to"
    " company_id of scratch.id_only_key",
    "scratch.points_crossed: foreign key points_crossed_fkey does not join company_id to"
    " company_id of scratch.good",
    "scratch.nullable_company: company_id may be NULL",
    "scratch.nullable_company: no primary key",
    "scratch.keyless_catalog: reference table without a primary key",
    "scratch.catalog_of_goods: foreign key catalog_of_goods_fkey of a reference table points"
    " at the distributed table scratch.good",
}


async def test_every_table_of_the_migrated_schema_follows_the_rule(database_url: str) -> None:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        catalog = await distribution.read_catalog(connection, distribution.SCHEMAS)
        found = await distribution.violations(connection)
    finally:
        await connection.close()
    assert found == [], "tables or constraints break the distribution rule:\n" + "\n".join(found)
    names = {t.name for t in catalog.tables.values()}
    assert names >= distribution.REFERENCE_TABLES, "a declared reference table is missing"
    assert len(names) > 20  # the four services' tables, not an empty schema


async def test_the_rule_names_every_table_and_constraint_that_breaks_it(db_server: str) -> None:
    async with fresh_database(db_server) as url:
        connection = await asyncpg.connect(plain_url(url))
        try:
            await connection.execute("CREATE SCHEMA scratch")
            for script in (CATALOGS, BAD_TABLES, REFERENCE_TO_DISTRIBUTED):
                await connection.execute(script)
            found = await distribution.violations(connection, ["scratch"], SCRATCH_REFERENCE)
        finally:
            await connection.close()
    assert set(found) == EXPECTED
    assert len(found) == len(EXPECTED)


def documented_ddl() -> list[str]:
    text = DOC.read_text()
    block = re.search(r"<!-- distribution-ddl -->\s*```sql\n(.*?)```", text, re.S)
    assert block, "docs/distribution.md has no DDL block after <!-- distribution-ddl -->"
    return [line for line in block.group(1).splitlines() if line.strip()]


async def test_the_documented_ddl_distributes_exactly_the_migrated_tables(
    database_url: str,
) -> None:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        expected = distribution.ddl(
            await distribution.read_catalog(connection, distribution.SCHEMAS)
        )
    finally:
        await connection.close()
    assert documented_ddl() == expected, (
        "docs/distribution.md's DDL differs from the migrated schema; it should read:\n"
        + "\n".join(expected)
    )
