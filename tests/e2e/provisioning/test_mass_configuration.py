"""CSV mass configuration with every service its own process, over real gRPC and
PostgreSQL: 10,000 rows (dry run, apply, re-apply), and a provisioning process killed in
the middle of an import, restarted, the import re-run: the same state as a clean import.

Users are created through CreateUser (a pool allocation each), the units through the
pool's AddUnits; the checks count rows in both services' schemas.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
import pytest_asyncio

from licensing.provisioning.v1 import provisioning_pb2 as pb
from tests.support.pool import rid
from tests.support.provisioning import Processes, Tenant, new_tenant, spawned_platform

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

ROWS = int(os.environ.get("E2E_IMPORT_ROWS", "10000"))
CRASH_ROWS = int(os.environ.get("E2E_CRASH_IMPORT_ROWS", "2000"))
ADDONS = ("device_ip_phone", "call_recording")
UNIT_TYPES = ("phone_system", *ADDONS)
# Smaller pool calls than the default (1000 units) so that an import is many calls and a
# kill lands between them; 10,000 rows stay fast.
CHUNK = 250


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def processes(database_url: str) -> AsyncIterator[Processes]:
    async with spawned_platform(database_url, import_chunk_size=str(CHUNK)) as running:
        yield running


async def seeded(processes: Processes, rows: int) -> Tenant:
    """A company with one office, `rows` users (CreateUser), and as SPARE units exactly
    what a file of `rows` rows needs."""
    tenant = new_tenant(processes.platform)
    await tenant.company.office("hq", "USD", primary=True)
    for code in ("connect", *UNIT_TYPES):
        await tenant.company.add("hq", code, rows)
    gate = asyncio.Semaphore(32)

    async def create(n: int) -> None:
        async with gate:
            await tenant.stub.CreateUser(
                pb.CreateUserRequest(
                    request_id=rid(),
                    company_id=tenant.company_id,
                    office_id=tenant.company.offices["hq"],
                    display_name=f"User {n:05d}",
                    license_type="connect",
                )
            )

    await asyncio.gather(*(create(n) for n in range(rows)))
    return tenant


def csv_file(rows: int) -> bytes:
    """Ext key, number, user (by name) and two add-ons per row."""
    lines = ["Ext Key,Number,User,Addon license 1,Addon license 2"]
    lines += [f"{1000 + n},+1555{n:07d},User {n:05d},{','.join(ADDONS)}" for n in range(rows)]
    return ("\r\n".join(lines) + "\r\n").encode()


async def provisioning_counts(db: asyncpg.Pool, company_id: str) -> dict[str, int]:
    row = await db.fetchrow(
        """
        SELECT
            (SELECT count(*) FROM provisioning.users WHERE company_id = $1) AS users,
            (SELECT count(*) FROM provisioning.licenses WHERE company_id = $1) AS licenses,
            (SELECT count(DISTINCT ext_key) FROM provisioning.licenses
                WHERE company_id = $1) AS extensions,
            (SELECT count(DISTINCT number_key) FROM provisioning.licenses
                WHERE company_id = $1) AS numbers,
            (SELECT count(*) FROM provisioning.addons WHERE company_id = $1) AS addons
        """,
        uuid.UUID(company_id),
    )
    assert row is not None
    return dict(row)


async def pool_counts(db: asyncpg.Pool, company_id: str) -> dict[tuple[str, str], int]:
    """Units per (type, state) of the company."""
    rows = await db.fetch(
        "SELECT license_type, state, count(*) AS n FROM pool.units"
        " WHERE company_id = $1 GROUP BY 1, 2",
        uuid.UUID(company_id),
    )
    return {(r["license_type"], r["state"]): r["n"] for r in rows}


async def configured(db: asyncpg.Pool, company_id: str) -> list[tuple[object, ...]]:
    """The company's licenses as a user sees them, independent of ids: user, type,
    extension, number, add-ons. Each license and add-on must be a pool unit ASSIGNED to
    its user or base license (checked by the joins)."""
    rows = await db.fetch(
        """
        SELECT u.display_name, l.license_type, l.ext_key, l.number,
               coalesce(array_agg(a.license_type ORDER BY a.license_type)
                        FILTER (WHERE a.addon_id IS NOT NULL), '{}') AS addons,
               bool_and(pu.state = 'ASSIGNED' AND pu.assignee_id = u.user_id::text)
                   AS base_assigned,
               coalesce(bool_and(pa.state = 'ASSIGNED'
                                 AND pa.assignee_kind = 'BASE_LICENSE'
                                 AND pa.assignee_id = l.license_id::text)
                        FILTER (WHERE a.addon_id IS NOT NULL), true) AS addons_assigned
        FROM provisioning.licenses l
        JOIN provisioning.users u USING (company_id, user_id)
        JOIN pool.units pu ON pu.company_id = l.company_id AND pu.unit_id = l.license_id
        LEFT JOIN provisioning.addons a
            ON a.company_id = l.company_id AND a.license_id = l.license_id
        LEFT JOIN pool.units pa ON pa.company_id = a.company_id AND pa.unit_id = a.addon_id
        WHERE l.company_id = $1
        GROUP BY u.display_name, l.company_id, l.license_id
        ORDER BY u.display_name, l.license_type
        """,
        uuid.UUID(company_id),
    )
    assert all(r["base_assigned"] and r["addons_assigned"] for r in rows)
    return [
        (r["display_name"], r["license_type"], r["ext_key"], r["number"], tuple(r["addons"]))
        for r in rows
    ]


async def pending_holds(db: asyncpg.Pool, company_id: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM pool.units WHERE company_id = $1 AND state = 'HELD'",
        uuid.UUID(company_id),
    )
    return count


def expected_pool(rows: int) -> dict[tuple[str, str], int]:
    return {(code, "ASSIGNED"): rows for code in ("connect", *UNIT_TYPES)}


@dataclass
class CleanImport:
    tenant: Tenant
    content: bytes
    dry: pb.Import
    dry_seconds: float
    before_apply: dict[str, int]
    applied: pb.Import
    apply_seconds: float


async def dry_run_and_apply(tenant: Tenant, content: bytes, import_id: str) -> CleanImport:
    db_less = {"licenses": len(await tenant.licenses())}
    began = time.monotonic()
    dry = await tenant.configure("hq", content, validate_only=True)
    dry_seconds = time.monotonic() - began
    began = time.monotonic()
    await tenant.configure("hq", content, import_id=import_id)
    applied = await tenant.finished(import_id)
    return CleanImport(
        tenant, content, dry, dry_seconds, db_less, applied, time.monotonic() - began
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def big(processes: Processes) -> CleanImport:
    tenant = await seeded(processes, ROWS)
    return await dry_run_and_apply(tenant, csv_file(ROWS), "big-import")


async def test_ten_thousand_rows_dry_run_apply_and_reapply(
    big: CleanImport, db: asyncpg.Pool
) -> None:
    tenant = big.tenant
    print(f"\n{ROWS} rows: dry run {big.dry_seconds:.1f}s, apply {big.apply_seconds:.1f}s")
    assert big.dry.state == pb.IMPORT_STATE_VALIDATED
    assert (big.dry.row_count, big.dry.error_count) == (ROWS, 0)
    quote = {q.license_type: (q.needed, q.own_spare, q.shortfall) for q in big.dry.quote}
    assert quote == {code: (ROWS, ROWS, 0) for code in UNIT_TYPES}
    assert big.before_apply == {"licenses": 0}  # the dry run changed nothing

    assert big.applied.state == pb.IMPORT_STATE_SUCCEEDED, big.applied.failure
    assert big.applied.progress.rows_applied == ROWS
    assert big.applied.progress.units_committed == 3 * ROWS
    counts = {
        "users": ROWS,
        "licenses": ROWS,
        "extensions": ROWS,
        "numbers": ROWS,
        "addons": 2 * ROWS,
    }
    assert await provisioning_counts(db, tenant.company_id) == counts
    assert await pool_counts(db, tenant.company_id) == expected_pool(ROWS)

    # The same import id again: the stored import, nothing applied twice.
    again = await tenant.configure("hq", big.content, import_id="big-import")
    assert again.state == pb.IMPORT_STATE_SUCCEEDED
    assert again.import_id == "big-import"
    assert (await tenant.finished("big-import")).progress == big.applied.progress
    assert await provisioning_counts(db, tenant.company_id) == counts
    assert await pool_counts(db, tenant.company_id) == expected_pool(ROWS)
    assert len(await tenant.licenses(page_size=1000)) == ROWS  # through the API too
    assert big.dry_seconds < 30
    assert big.apply_seconds < 60


async def kill_mid_import(processes: Processes, db: asyncpg.Pool, company_id: str) -> str:
    """SIGKILLs provisioning once the import committed some of its units but not all;
    returns the stage it was killed in."""
    assert processes.provisioning is not None
    while True:
        row = await db.fetchrow(
            "SELECT state, stage, units_reserved, units_committed, units_total"
            " FROM provisioning.imports WHERE company_id = $1 AND import_id = 'crash'",
            uuid.UUID(company_id),
        )
        if row is not None:
            assert row["state"] == "RUNNING", "the import ended before it could be killed"
            if row["units_committed"] > 0:
                processes.provisioning.kill()
                await processes.provisioning.process.wait()
                return str(row["stage"])
        await asyncio.sleep(0.005)


async def test_killed_mid_import_then_rerun_equals_a_clean_import(
    processes: Processes, db: asyncpg.Pool
) -> None:
    content = csv_file(CRASH_ROWS)
    clean, crashed = await asyncio.gather(
        seeded(processes, CRASH_ROWS), seeded(processes, CRASH_ROWS)
    )
    reference = await dry_run_and_apply(clean, content, "crash")
    assert reference.applied.state == pb.IMPORT_STATE_SUCCEEDED, reference.applied.failure

    started = asyncio.create_task(crashed.configure("hq", content, import_id="crash"))
    stage = await kill_mid_import(processes, db, crashed.company_id)
    print(f"\nkilled in {stage}")
    await asyncio.gather(started, return_exceptions=True)  # answered before, or cut off
    # Killed half-way: the import is RUNNING, some units committed, others held or not
    # reserved yet, and no license written.
    row = await db.fetchrow(
        "SELECT state, units_committed, units_total FROM provisioning.imports"
        " WHERE company_id = $1 AND import_id = 'crash'",
        uuid.UUID(crashed.company_id),
    )
    assert row is not None
    assert row["state"] == "RUNNING"
    assert 0 < row["units_committed"] < row["units_total"] == 3 * CRASH_ROWS, (stage, dict(row))
    assert (await provisioning_counts(db, crashed.company_id))["licenses"] == 0

    await processes.start_provisioning()
    rerun = await crashed.configure("hq", content, import_id="crash")
    assert rerun.import_id == "crash"
    done = await crashed.finished("crash")
    assert done.state == pb.IMPORT_STATE_SUCCEEDED, done.failure
    assert done.progress.rows_applied == CRASH_ROWS

    # The same state as the clean import of the same file in the other company.
    assert await configured(db, crashed.company_id) == await configured(db, clean.company_id)
    assert await provisioning_counts(db, crashed.company_id) == await provisioning_counts(
        db, clean.company_id
    )
    assert await pool_counts(db, crashed.company_id) == expected_pool(CRASH_ROWS)
    assert await pool_counts(db, clean.company_id) == expected_pool(CRASH_ROWS)
    assert await pending_holds(db, crashed.company_id) == 0
    # And once more with the same id: nothing changes.
    again = await crashed.configure("hq", content, import_id="crash")
    assert again.state == pb.IMPORT_STATE_SUCCEEDED
    assert await pool_counts(db, crashed.company_id) == expected_pool(CRASH_ROWS)
