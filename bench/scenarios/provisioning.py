"""S9: CSV mass configuration of 10,000 rows, rows/s end to end.

A pool service and a provisioning service (`python -m services.provisioning serve`, env
`PROVISIONING_*`, the pool found through `POOL_ADDRESS`), each on a scratch database,
set up through their APIs (bench/scenarios/provisioning_setup.py).

Timed: the dry run (`MassConfigure` with `validate_only`), then the apply (`MassConfigure`
until `GetImport` says it ended). Reported: rows/s of each and of both together (target:
at least 2,000 rows/s end to end). Checks: bench/scenarios/provisioning_checks.py.

If the provisioning service cannot start or its import RPCs fail, S9 is `skipped` with
the reason instead of failing the run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from bench.harness.context import BenchContext
from bench.harness.database import scratch_database
from bench.harness.registry import scenario
from bench.harness.results import Comparison, Outcome, Row, compare, finished, skipped
from bench.harness.services import ServiceTarget, module_unavailable, service_process
from bench.scenarios.pool_service import PoolTarget, pool_service, unavailable_reason
from bench.scenarios.provisioning_checks import database_state, import_check, reapply_check
from bench.scenarios.provisioning_setup import Office, create_users, csv_file, seed_pool
from licensing.provisioning.v1 import provisioning_pb2 as prov_pb2
from licensing.provisioning.v1 import provisioning_pb2_grpc as prov_grpc

MODULE = "services.provisioning"
TITLE = "CSV mass configuration"
ROWS = 10_000
TARGET_ROWS_PER_S = 2_000.0
POLL_S = 0.02
APPLY_TIMEOUT_S = 900.0


class Skip(Exception):
    """The service is not ready: S9 reports `skipped` with this reason."""


def _rpc_text(error: grpc.RpcError) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return str(error)


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
    return finished("S9", TITLE, rows_out, checks)


@scenario("S9", f"CSV mass configuration of {ROWS:,} rows (dry run + apply)")
def s9(ctx: BenchContext) -> Outcome:
    reason = unavailable_reason() or module_unavailable(MODULE)
    if reason:
        return skipped("S9", TITLE, reason)
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
        return skipped("S9", TITLE, str(skip))
    except (RuntimeError, TimeoutError) as error:  # the service did not start or migrate
        ctx.keep = True
        return skipped("S9", TITLE, f"provisioning not ready: {error}")
