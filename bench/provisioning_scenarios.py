"""S9: CSV mass configuration of 10,000 rows, rows/s end to end.

A pool service and a provisioning service (`python -m services.provisioning serve`, env
`PROVISIONING_*`, the pool found through `POOL_ADDRESS`), each on a scratch database.
Setup through the APIs: one office (pool `PutOffice`), the units the file needs as SPARE
units of the office (pool `AddUnits`: a user license per user, a `phone_system` base and
the add-ons per row), and the users (provisioning `CreateUser`, many in flight). The file
has one row per user: a unique extension key, a unique number, the user (by id) and
the add-ons.

Timed: the dry run (`MassConfigure` with `validate_only`), then the apply (`MassConfigure`
until `GetImport` says it ended). Reported: rows/s of each and of both together (target:
at least 2,000 rows/s end to end).

Checks: the import SUCCEEDED with every row applied; in the provisioning database one
Phone System license per row, no extension key or number twice, the add-ons of every
row; in the pool database the units assigned are the ones the file needed; and applying
the same file with the same import id again returns that import and changes nothing.

If the provisioning service cannot start or its import RPCs fail, S9 is `skipped` with
the reason instead of failing the run.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from bench.context import BenchContext
from bench.database import fetch, scratch_database
from bench.pool_service import PoolTarget, pool_service, unavailable_reason
from bench.pool_setup import ADD_UNITS_MAX
from bench.registry import scenario
from bench.results import CheckResult, Comparison, Outcome, Row, compare
from bench.services import ServiceTarget, module_unavailable, service_process
from licensing.pool.v1 import pool_pb2, pool_pb2_grpc
from licensing.provisioning.v1 import provisioning_pb2 as prov_pb2
from licensing.provisioning.v1 import provisioning_pb2_grpc as prov_grpc

MODULE = "services.provisioning"
TITLE = "CSV mass configuration"
ROWS = 10_000
TARGET_ROWS_PER_S = 2_000.0
CURRENCY = "USD"
USER_LICENSE = "connect"
BASE_LICENSE = "phone_system"
ADDONS = ("device_ip_phone", "call_recording")
CREATE_USER_CONCURRENCY = 32
POLL_S = 0.02
APPLY_TIMEOUT_S = 900.0

# Provisioning database: Phone System licenses of the office, distinct keys and numbers.
LICENSES_SQL = """
    SELECT count(*) AS licenses,
           count(DISTINCT ext_key) AS ext_keys,
           count(DISTINCT number_key) AS numbers,
           count(*) FILTER (WHERE ext_key IS NULL OR number IS NULL) AS unconfigured,
           coalesce(max(updated_at)::text, '') AS last_change
    FROM provisioning.licenses WHERE office_id = $1 AND license_type = $2
"""
ADDONS_SQL = """
    SELECT a.license_type, count(*) AS n, coalesce(max(a.created_at)::text, '') AS last
    FROM provisioning.addons a JOIN provisioning.licenses l USING (license_id)
    WHERE l.office_id = $1 GROUP BY a.license_type ORDER BY a.license_type
"""
# Pool database: units per (type, state) of the office.
POOL_UNITS_SQL = """
    SELECT license_type, state, count(*) AS n FROM pool.units
    WHERE office_id = $1 GROUP BY license_type, state ORDER BY license_type, state
"""


class Skip(Exception):
    """The service is not ready: S9 reports `skipped` with this reason."""


@dataclass(frozen=True)
class Office:
    company_id: str
    office_id: str


def _rpc_text(error: grpc.RpcError) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return str(error)


# ------------------------------------------------------------------ setup


def seed_pool(address: str, rows: int) -> Office:
    """One office with, as SPARE units, everything the users and the file need."""
    office = Office(str(uuid.uuid4()), str(uuid.uuid4()))
    with grpc.insecure_channel(address) as channel:
        stub = pool_pb2_grpc.PoolServiceStub(channel)
        stub.PutOffice(
            pool_pb2.PutOfficeRequest(
                request_id=str(uuid.uuid4()),
                office=pool_pb2.Office(
                    company_id=office.company_id,
                    office_id=office.office_id,
                    currency=CURRENCY,
                    plan_kind=pool_pb2.PLAN_KIND_BUNDLE,
                    primary=True,
                ),
            ),
            timeout=30,
        )
        for license_type in (USER_LICENSE, BASE_LICENSE, *ADDONS):
            left = rows
            while left > 0:
                batch = min(left, ADD_UNITS_MAX)
                stub.AddUnits(
                    pool_pb2.AddUnitsRequest(
                        request_id=str(uuid.uuid4()),
                        company_id=office.company_id,
                        office_id=office.office_id,
                        license_type=license_type,
                        quantity=batch,
                    ),
                    timeout=300,
                )
                left -= batch
    return office


async def _create_users(address: str, office: Office, count: int) -> list[str]:
    users: list[str] = [""] * count
    gate = asyncio.Semaphore(CREATE_USER_CONCURRENCY)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = prov_grpc.ProvisioningServiceStub(channel)

        async def create(index: int) -> None:
            request = prov_pb2.CreateUserRequest(
                request_id=str(uuid.uuid4()),
                company_id=office.company_id,
                office_id=office.office_id,
                display_name=f"Bench User {index:05d}",
                email=f"user{index:05d}@bench.example",
                license_type=USER_LICENSE,
            )
            async with gate:
                answer = await stub.CreateUser(request, timeout=60)
            users[index] = answer.user.user_id

        await asyncio.gather(*(create(i) for i in range(count)))
    return users


def create_users(address: str, office: Office, count: int) -> list[str]:
    """`count` users of the office (CreateUser, many in flight); their ids in order."""
    return asyncio.run(_create_users(address, office, count))


def csv_file(users: list[str]) -> bytes:
    """One row per user: unique extension key and number, the user's id, the add-ons."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    addon_headers = [f"Addon license {i + 1}" for i in range(len(ADDONS))]
    writer.writerow(["Ext Key", "Number", "User", *addon_headers])
    for index, user_id in enumerate(users):
        writer.writerow([str(10_000 + index), f"+1555{index:07d}", user_id, *ADDONS])
    return out.getvalue().encode()


# ------------------------------------------------------------------ the import


class Importer:
    """MassConfigure and GetImport (blocking client)."""

    def __init__(self, address: str, office: Office) -> None:
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ],
        )
        self._stub = prov_grpc.ProvisioningServiceStub(self._channel)
        self._office = office
        self.stage_s: dict[str, float] = {}  # seconds the import was seen in each stage

    def close(self) -> None:
        self._channel.close()

    def configure(self, content: bytes, import_id: str, validate_only: bool) -> prov_pb2.Import:
        request = prov_pb2.MassConfigureRequest(
            import_id=import_id,
            company_id=self._office.company_id,
            office_id=self._office.office_id,
            content=content,
            validate_only=validate_only,
        )
        answer: prov_pb2.MassConfigureResponse = self._stub.MassConfigure(request, timeout=600)
        return answer.import_job

    def wait(self, import_id: str, job: prov_pb2.Import) -> prov_pb2.Import:
        """Polls GetImport until the import has ended; adds up the time seen per stage."""
        deadline = time.monotonic() + APPLY_TIMEOUT_S
        request = prov_pb2.GetImportRequest(company_id=self._office.company_id, import_id=import_id)
        last = time.perf_counter()
        while job.state == prov_pb2.IMPORT_STATE_RUNNING:
            if time.monotonic() > deadline:
                raise Skip(f"import {import_id} still running after {APPLY_TIMEOUT_S:g}s")
            time.sleep(POLL_S)
            answer: prov_pb2.GetImportResponse = self._stub.GetImport(request, timeout=60)
            now = time.perf_counter()
            stage = prov_pb2.ImportStage.Name(job.stage).removeprefix("IMPORT_STAGE_").lower()
            self.stage_s[stage] = self.stage_s.get(stage, 0.0) + now - last
            last = now
            job = answer.import_job
        return job


def _timed(action: Callable[[], prov_pb2.Import]) -> tuple[prov_pb2.Import, float]:
    started = time.perf_counter()
    job = action()
    return job, time.perf_counter() - started


def _issues(job: prov_pb2.Import) -> str:
    first = "; ".join(f"row {e.row} {e.reason}: {e.message}" for e in job.errors[:3])
    return f"{job.error_count} errors ({first})"


# ------------------------------------------------------------------ checks


def database_state(provisioning_url: str, pool_url: str, office: Office) -> dict[str, Any]:
    """What the two databases hold for the office (compared before and after a re-apply)."""
    office_id = uuid.UUID(office.office_id)
    licenses = fetch(provisioning_url, LICENSES_SQL, office_id, BASE_LICENSE)[0]
    addons = fetch(provisioning_url, ADDONS_SQL, office_id)
    units = fetch(pool_url, POOL_UNITS_SQL, office_id)
    return {
        "licenses": int(licenses["licenses"]),
        "ext_keys": int(licenses["ext_keys"]),
        "numbers": int(licenses["numbers"]),
        "unconfigured": int(licenses["unconfigured"]),
        "licenses_last_change": licenses["last_change"],
        "addons": {r["license_type"]: int(r["n"]) for r in addons},
        "addons_last": {r["license_type"]: r["last"] for r in addons},
        "pool_units": {f"{r['license_type']} {r['state']}": int(r["n"]) for r in units},
    }


def import_check(job: prov_pb2.Import, state: dict[str, Any], rows: int) -> CheckResult:
    problems: list[str] = []
    if job.state != prov_pb2.IMPORT_STATE_SUCCEEDED:
        problems.append(f"import ended {prov_pb2.ImportState.Name(job.state)}")
    if job.progress.rows_applied != rows:
        problems.append(f"{job.progress.rows_applied} rows applied of {rows}")
    for key in ("licenses", "ext_keys", "numbers"):
        if state[key] != rows:
            problems.append(f"{state[key]} {key.replace('_', ' ')} in the database, {rows} rows")
    if state["unconfigured"]:
        problems.append(f"{state['unconfigured']} licenses without extension key or number")
    for addon in ADDONS:
        if state["addons"].get(addon, 0) != rows:
            problems.append(f"{state['addons'].get(addon, 0)} {addon} add-ons, {rows} rows")
    for license_type in (BASE_LICENSE, *ADDONS):
        assigned = state["pool_units"].get(f"{license_type} ASSIGNED", 0)
        if assigned != rows:
            problems.append(f"pool: {assigned} {license_type} units ASSIGNED, {rows} rows")
    return CheckResult(
        "S9: every row applied once, no extension key or number twice",
        passed=not problems,
        facts={"rows": rows, "rows_applied": job.progress.rows_applied, **state},
        problems=tuple(problems),
    )


def reapply_check(
    first: prov_pb2.Import, again: prov_pb2.Import, before: dict[str, Any], after: dict[str, Any]
) -> CheckResult:
    problems: list[str] = []
    if again.import_id != first.import_id or again.state != first.state:
        problems.append(
            f"re-apply returned import {again.import_id} "
            f"{prov_pb2.ImportState.Name(again.state)}, not the first one"
        )
    changed = sorted(key for key in before if before[key] != after.get(key))
    if changed:
        problems.append(f"re-apply changed {changed}")
    return CheckResult(
        "S9: re-apply with the same import id changes nothing",
        passed=not problems,
        facts={"changed": changed},
        problems=tuple(problems),
    )


# ------------------------------------------------------------------ S9


def _rows_row(
    name: str,
    rows: int,
    seconds: float,
    comparisons: tuple[Comparison, ...] = (),
    notes: tuple[str, ...] = (),
    **details: Any,
) -> Row:
    return Row(
        scenario=name,
        throughput=rows / seconds if seconds > 0 else 0.0,
        unit="rows/s",
        duration_s=round(seconds, 2),
        comparisons=comparisons,
        notes=notes,
        details={"rows": rows, "seconds": seconds, **details},
    )


def run_s9(ctx: BenchContext, pool: PoolTarget, provisioning: ServiceTarget, rows: int) -> Outcome:
    try:
        office = seed_pool(pool.address, rows)
        setup_started = time.perf_counter()
        users = create_users(provisioning.address, office, rows)
        users_s = time.perf_counter() - setup_started
    except grpc.RpcError as error:
        raise Skip(f"setup failed: {_rpc_text(error)}") from error
    content = csv_file(users)
    ctx.path("S9.csv").write_bytes(content)
    import_id = f"bench-s9-{uuid.uuid4().hex[:12]}"
    importer = Importer(provisioning.address, office)
    try:
        dry, dry_s = _timed(lambda: importer.configure(content, import_id, validate_only=True))
        if dry.error_count or dry.state != prov_pb2.IMPORT_STATE_VALIDATED:
            raise Skip(f"dry run refused the file: {_issues(dry)}")
        job, apply_s = _timed(
            lambda: importer.wait(import_id, importer.configure(content, import_id, False))
        )
        if job.state != prov_pb2.IMPORT_STATE_SUCCEEDED:
            failure = f"{job.failure.reason}: {job.failure.message}" if job.failure.reason else ""
            raise Skip(
                f"import ended {prov_pb2.ImportState.Name(job.state)} {failure} {_issues(job)}"
            )
        stage_s = dict(importer.stage_s)
        state = database_state(provisioning.database_url, pool.database_url, office)
        again = importer.wait(import_id, importer.configure(content, import_id, False))
        after = database_state(provisioning.database_url, pool.database_url, office)
    except grpc.RpcError as error:
        raise Skip(f"import RPC failed: {_rpc_text(error)}") from error
    finally:
        importer.close()
    total_s = dry_s + apply_s
    stages = "stages seen: " + ", ".join(f"{k} {v:.1f}s" for k, v in stage_s.items())
    rows_out = [
        _rows_row("S9 dry run", rows, dry_s, notes=(f"{len(content) / 1e6:.1f} MB CSV",)),
        _rows_row("S9 apply", rows, apply_s, notes=(stages,), stage_s=stage_s),
        _rows_row(
            "S9 dry run + apply",
            rows,
            total_s,
            comparisons=(compare(rows / total_s, TARGET_ROWS_PER_S, "2,000 rows/s", at_least=1.0),),
            notes=(f"setup: {rows:,} CreateUser in {users_s:.1f}s (not timed)",),
        ),
    ]
    checks = [import_check(job, state, rows), reapply_check(job, again, state, after)]
    passed = all(check.passed for check in checks)
    return Outcome("S9", TITLE, "ok" if passed else "failed", rows_out, checks)


@scenario("S9", f"CSV mass configuration of {ROWS:,} rows (dry run + apply)")
def s9(ctx: BenchContext) -> Outcome:
    reason = unavailable_reason() or module_unavailable(MODULE)
    if reason:
        return Outcome("S9", TITLE, "skipped", message=reason)
    try:
        with (
            pool_service(ctx, "s9") as pool,
            scratch_database(ctx.admin_url, "provisioning_s9") as database_url,
            service_process(
                ctx,
                MODULE,
                "PROVISIONING",
                database_url,
                "provisioning-s9",
                {"POOL_ADDRESS": pool.address},
            ) as provisioning,
        ):
            return run_s9(ctx, pool, provisioning, ROWS)
    except Skip as skip:
        ctx.keep = True
        return Outcome("S9", TITLE, "skipped", message=str(skip))
    except (RuntimeError, TimeoutError) as error:  # the service did not start or migrate
        ctx.keep = True
        return Outcome("S9", TITLE, "skipped", message=f"provisioning not ready: {error}")
