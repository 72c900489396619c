"""As-of snapshots are the live ones (docs/product.md, "Unit history and as-of
snapshots"): a hypothesis state machine runs a random sequence of operations against
the real service and PostgreSQL on the database clock, takes live snapshots at random
points while other writers run (the hold sweeper, and a background task that keeps
acquiring and returning units of the same pool), and at the end asks for every one of
them again as of its snapshot_time: each must come back the same. The counts live
snapshots read (kept by triggers on the units) equal the units counted, at the end."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any, ClassVar

import asyncpg
import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from licensing.pool.v1 import pool_pb2 as pb
from licensing.pool.v1 import pool_pb2_grpc
from tests.support import tls
from tests.support.pool import running_pool

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

OFFICES = {"a": "USD", "b": "USD", "e": "EUR"}
TYPES = ("connect", "agentic_ai")  # poolable, never poolable
CHURN_TYPE = "sell"  # the background writer's own units
# Refusals a random operation may meet (no unit to take, a hold that ended, a unit that
# changed meanwhile): the machine goes on; anything else fails the test.
EXPECTED = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED}


def rid() -> str:
    return str(uuid.uuid4())


class HistoryMachine(RuleBasedStateMachine):
    stub: ClassVar[pool_pb2_grpc.PoolServiceStub]
    company_id: ClassVar[str]  # shared with the background writer

    def __init__(self) -> None:
        super().__init__()
        self.offices: dict[str, str] = {}
        self.holds: list[str] = []
        self.live: list[tuple[str, pb.GetSnapshotResponse]] = []

    def call(self, method: Any, request: Any) -> Any:
        try:
            return method(request)
        except grpc.RpcError as error:
            if error.code() not in EXPECTED:  # type: ignore[attr-defined]
                raise
            return None

    @initialize()
    def offices_of_the_company(self) -> None:
        for name, currency in OFFICES.items():
            office_id = str(uuid.uuid4())
            self.stub.PutOffice(
                pb.PutOfficeRequest(
                    request_id=rid(),
                    office=pb.Office(
                        company_id=self.company_id,
                        office_id=office_id,
                        currency=currency,
                        plan_kind=pb.PLAN_KIND_BUNDLE,
                    ),
                )
            )
            self.offices[name] = office_id

    def picks(self, data: st.DataObject, *states: int) -> list[str]:
        """Some of the machine's units in these states (never the background writer's)."""
        found = [
            u.unit_id
            for state in states
            for u in self.stub.ListUnits(
                pb.ListUnitsRequest(company_id=self.company_id, state=state, page_size=1000)  # type: ignore[arg-type]
            ).units
            if u.license_type != CHURN_TYPE and u.office_id in self.offices.values()
        ]
        if not found:
            return []
        return data.draw(st.lists(st.sampled_from(found), min_size=1, max_size=3, unique=True))

    @rule(office=st.sampled_from(list(OFFICES)), code=st.sampled_from(TYPES), n=st.integers(1, 3))
    def add(self, office: str, code: str, n: int) -> None:
        self.stub.AddUnits(
            pb.AddUnitsRequest(
                request_id=rid(),
                company_id=self.company_id,
                office_id=self.offices[office],
                license_type=code,
                quantity=n,
            )
        )

    @rule(office=st.sampled_from(list(OFFICES)), code=st.sampled_from(TYPES), n=st.integers(1, 2))
    def acquire(self, office: str, code: str, n: int) -> None:
        self.call(
            self.stub.Acquire,
            pb.AcquireRequest(
                request_id=rid(),
                company_id=self.company_id,
                office_id=self.offices[office],
                license_type=code,
                quantity=n,
            ),
        )

    @rule(
        office=st.sampled_from(list(OFFICES)),
        n=st.integers(1, 2),
        ttl=st.integers(1, 3),
        partial=st.booleans(),
    )
    def reserve(self, office: str, n: int, ttl: int, partial: bool) -> None:
        response = self.call(
            self.stub.Reserve,
            pb.ReserveRequest(
                request_id=rid(),
                company_id=self.company_id,
                office_id=self.offices[office],
                license_type="connect",
                quantity=n,
                ttl_seconds=ttl,
                allow_partial=partial,
            ),
        )
        if response is not None and response.HasField("hold"):
            self.holds.append(response.hold.hold_id)

    @rule(data=st.data(), assign=st.booleans())
    def commit(self, data: st.DataObject, assign: bool) -> None:
        if not self.holds:
            return
        hold_id = data.draw(st.sampled_from(self.holds))
        hold = self.stub.GetHold(pb.GetHoldRequest(company_id=self.company_id, hold_id=hold_id))
        assignees = [pb.Assignee(kind=pb.ASSIGNEE_KIND_USER, id=rid()) for _ in hold.hold.unit_ids]
        self.call(
            self.stub.Commit,
            pb.CommitRequest(
                request_id=rid(),
                company_id=self.company_id,
                hold_id=hold_id,
                assignees=assignees if assign else [],
            ),
        )

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if self.holds:
            hold_id = data.draw(st.sampled_from(self.holds))
            self.call(
                self.stub.Release,
                pb.ReleaseRequest(request_id=rid(), company_id=self.company_id, hold_id=hold_id),
            )

    @rule(data=st.data())
    def give_back(self, data: st.DataObject) -> None:
        units = self.picks(data, pb.UNIT_STATE_ASSIGNED, pb.UNIT_STATE_SPARE)
        if units:
            self.call(
                self.stub.ReturnUnits,
                pb.ReturnUnitsRequest(request_id=rid(), company_id=self.company_id, unit_ids=units),
            )

    @rule(data=st.data())
    def terminate(self, data: st.DataObject) -> None:
        units = self.picks(data, pb.UNIT_STATE_SPARE, pb.UNIT_STATE_POOLED)
        if units:
            self.call(
                self.stub.TerminateUnits,
                pb.TerminateUnitsRequest(
                    request_id=rid(), company_id=self.company_id, unit_ids=units
                ),
            )

    @rule(office=st.sampled_from(list(OFFICES)), n=st.integers(1, 2), restore=st.booleans())
    def removal(self, office: str, n: int, restore: bool) -> None:
        fields = {
            "request_id": rid(),
            "company_id": self.company_id,
            "office_id": self.offices[office],
            "license_type": "connect",
            "quantity": n,
        }
        if restore:
            self.call(self.stub.RestoreFromRemoval, pb.RestoreFromRemovalRequest(**fields))  # type: ignore[arg-type]
        else:
            self.call(self.stub.MarkForRemoval, pb.MarkForRemovalRequest(**fields))  # type: ignore[arg-type]

    @rule(currency=st.sampled_from(["USD", "EUR"]))
    def enable(self, currency: str) -> None:
        self.call(
            self.stub.EnablePool,
            pb.EnablePoolRequest(request_id=rid(), company_id=self.company_id, currency=currency),
        )

    @rule(seconds=st.floats(0, 0.05))
    def pause(self, seconds: float) -> None:
        time.sleep(seconds)

    @rule(currency=st.sampled_from(["", "USD", "EUR"]))
    def snapshot(self, currency: str) -> None:
        live = self.stub.GetSnapshot(
            pb.GetSnapshotRequest(company_id=self.company_id, currency=currency)
        )
        self.live.append((currency, live))

    def teardown(self) -> None:
        for currency, live in self.live:
            then = self.stub.GetSnapshot(
                pb.GetSnapshotRequest(
                    company_id=self.company_id, currency=currency, as_of_time=live.snapshot_time
                )
            )
            assert then == live


async def churn(stub: pool_pb2_grpc.PoolServiceStub, company_id: str, stop: asyncio.Event) -> int:
    """Another writer of the company's USD pool: takes a unit and gives it back, again
    and again, until told to stop; returns how many rounds it made."""
    office_id = str(uuid.uuid4())
    await stub.PutOffice(
        pb.PutOfficeRequest(
            request_id=rid(),
            office=pb.Office(
                company_id=company_id,
                office_id=office_id,
                currency="USD",
                plan_kind=pb.PLAN_KIND_BUNDLE,
            ),
        )
    )
    await stub.AddUnits(
        pb.AddUnitsRequest(
            request_id=rid(),
            company_id=company_id,
            office_id=office_id,
            license_type=CHURN_TYPE,
            quantity=2,
        )
    )
    rounds = 0
    while not stop.is_set():
        with contextlib.suppress(grpc.aio.AioRpcError):
            taken = await stub.Acquire(
                pb.AcquireRequest(
                    request_id=rid(),
                    company_id=company_id,
                    office_id=office_id,
                    license_type=CHURN_TYPE,
                    quantity=1,
                )
            )
            await stub.ReturnUnits(
                pb.ReturnUnitsRequest(
                    request_id=rid(),
                    company_id=company_id,
                    unit_ids=[u.unit_id for u in taken.units],
                )
            )
            rounds += 1
        await asyncio.sleep(0.002)
    return rounds


# The counts the units' triggers keep against the units themselves.
KEPT_COUNTS = """
SELECT office_id, currency, license_type, state, held_from, n FROM pool.unit_counts
WHERE company_id = $1 AND n <> 0 ORDER BY 1, 2, 3, 4, 5
"""
COUNTED_UNITS = """
SELECT office_id, currency, license_type, state, coalesce(held_from, '') AS held_from,
    count(*) AS n
FROM pool.units WHERE company_id = $1 GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
"""


async def test_as_of_snapshots_equal_the_live_ones(database_url: str, db: asyncpg.Pool) -> None:
    # The database clock, a sweeper that runs often: holds really expire meanwhile.
    async with running_pool(database_url, sweep_interval_seconds=0.2) as (app, stub):
        channel = tls.sync_channel(f"127.0.0.1:{app.port}")
        HistoryMachine.stub = pool_pb2_grpc.PoolServiceStub(channel)
        machine = HistoryMachine.TestCase
        machine.settings = settings(
            max_examples=12,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        rounds = 0
        try:
            for _ in range(2):  # a new company (and a new background writer) per run
                HistoryMachine.company_id = str(uuid.uuid4())
                stop = asyncio.Event()
                writer = asyncio.create_task(churn(stub, HistoryMachine.company_id, stop))
                try:
                    # The service runs on this event loop; the machine talks to it from a
                    # thread.
                    await asyncio.to_thread(machine().runTest)
                finally:
                    stop.set()
                    rounds += await writer
                company = uuid.UUID(HistoryMachine.company_id)
                kept = [tuple(r) for r in await db.fetch(KEPT_COUNTS, company)]
                assert kept == [tuple(r) for r in await db.fetch(COUNTED_UNITS, company)]
        finally:
            channel.close()
        assert rounds > 0  # the background writer did run beside the snapshots
