"""A hypothesis state machine drives the real service (gRPC, PostgreSQL) and a simple
in-memory model of the credit rules (docs/product.md, "Credits") side by side; after
every step the balances, the office caps' draws and the alerts must agree and the ledger
must prove itself."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from libs.common.clock import FakeClock
from licensing.credits.v1 import credits_pb2 as pb
from licensing.credits.v1 import credits_pb2_grpc
from tests.support import tls
from tests.support.credits import running_credits

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

OFFICES = ("hq", "b", "c")
KINDS = {
    "CALLING": pb.USAGE_KIND_CALLING,
    "MESSAGING": pb.USAGE_KIND_MESSAGING,
    "AI_AGENT": pb.USAGE_KIND_AI_AGENT,
}


def _month(instant: datetime) -> tuple[int, int]:
    return (instant.year, instant.month)


@dataclass
class Model:
    """The credit rules the obvious way: dictionaries and arithmetic."""

    allowance: dict[str, int]
    reject: dict[str, bool]
    pooling: bool = False
    pool: int = 0
    own: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OFFICES, 0))
    ai: int = 0
    used_allowance: dict[tuple[str, tuple[int, int]], int] = field(default_factory=dict)
    consumed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OFFICES, 0))
    overage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OFFICES, 0))
    caps: dict[str, int] = field(default_factory=dict)
    pool_drawn: dict[tuple[str, tuple[int, int]], int] = field(default_factory=dict)
    thresholds: set[tuple[str, int]] = field(default_factory=set)  # (kind, value)
    top_up: int = 0
    alerted: set[tuple[str, int, tuple[int, int]]] = field(default_factory=set)

    def level(self, kind: str, value: int) -> int:
        return value if kind == "balance_minor" else self.top_up * value // 100

    def allowance_left(self, office: str, month: tuple[int, int]) -> int:
        return self.allowance[office] - self.used_allowance.get((office, month), 0)

    def use(
        self, office: str, kind: str, amount: int, month: tuple[int, int], now: tuple[int, int]
    ) -> tuple[int, ...]:
        """The expected split (allowance, own, pool, ai, overage) of a usage of `month`
        recorded in the month `now`; raises on REJECT."""
        parts = [0, 0, 0, 0, 0]
        left = amount
        if kind == "AI_AGENT":
            parts[3] = min(left, self.ai)
            left -= parts[3]
        else:
            parts[0] = min(left, self.allowance_left(office, month))
            left -= parts[0]
            if self.pooling:
                shared = self.pool
                if office in self.caps:
                    drawn = self.pool_drawn.get((office, month), 0)
                    shared = min(shared, max(self.caps[office] - drawn, 0))
                parts[2] = min(left, shared)
            else:
                parts[1] = min(left, self.own[office])
            left -= parts[1] + parts[2]
        if left and self.reject[office]:
            raise LookupError("INSUFFICIENT_CREDITS")
        parts[4] = left
        key = (office, month)
        self.used_allowance[key] = self.used_allowance.get(key, 0) + parts[0]
        self.pool_drawn[key] = self.pool_drawn.get(key, 0) + parts[2]
        for threshold_kind, value in self.thresholds:
            at = self.level(threshold_kind, value)
            if self.pool > at >= self.pool - parts[2] and parts[2]:
                self.alerted.add((threshold_kind, value, now))
        self.own[office] -= parts[1]
        self.pool -= parts[2]
        self.ai -= parts[3]
        self.consumed[office] += amount
        self.overage[office] += left
        return tuple(parts)


class CreditsMachine(RuleBasedStateMachine):
    stub: ClassVar[credits_pb2_grpc.CreditsServiceStub]
    clock: ClassVar[FakeClock]

    def __init__(self) -> None:
        super().__init__()
        self.company_id = str(uuid.uuid4())
        self.ids = {name: str(uuid.uuid4()) for name in OFFICES}
        self.model = Model({}, {})
        self.done: list[tuple[pb.RecordUsageRequest, pb.RecordUsageResponse]] = []
        self.clock.set(datetime(2026, 1, 15, 12, tzinfo=UTC))

    def _request_id(self) -> str:
        return str(uuid.uuid4())

    @initialize(
        allowances=st.lists(st.integers(0, 100), min_size=3, max_size=3),
        rejects=st.lists(st.booleans(), min_size=3, max_size=3),
    )
    def offices(self, allowances: list[int], rejects: list[bool]) -> None:
        for name, allowance, reject in zip(OFFICES, allowances, rejects, strict=True):
            self.stub.PutAccount(
                pb.PutAccountRequest(
                    request_id=self._request_id(),
                    account=pb.Account(
                        company_id=self.company_id,
                        office_id=self.ids[name],
                        currency="USD",
                        primary=name == "hq",
                        allowance_minor=allowance,
                        overage_policy=pb.OVERAGE_POLICY_REJECT
                        if reject
                        else pb.OVERAGE_POLICY_ALLOW,
                    ),
                )
            )
            self.model.allowance[name] = allowance
            self.model.reject[name] = reject

    @initialize(pooled=st.booleans(), shared=st.integers(0, 500))
    def start(self, pooled: bool, shared: int) -> None:
        """Half of the runs start pooled, with shared credits: caps and thresholds act."""
        if pooled:
            self.set_pooling(True)
        if shared:
            self.grant_pool(shared)

    def _grant(self, target: int, amount: int, office: str = "", currency: str = "") -> None:
        self.stub.GrantCredits(
            pb.GrantCreditsRequest(
                request_id=self._request_id(),
                company_id=self.company_id,
                target=target,  # type: ignore[arg-type]
                office_id=self.ids[office] if office else "",
                currency=currency,
                amount_minor=amount,
            )
        )

    @rule(amount=st.integers(1, 200))
    def grant_pool(self, amount: int) -> None:
        self._grant(pb.GRANT_TARGET_COMPANY_POOL, amount, currency="USD")
        self.model.pool += amount
        self.model.top_up = self.model.pool

    @rule(office=st.sampled_from(OFFICES), amount=st.integers(1, 200))
    def grant_office(self, office: str, amount: int) -> None:
        if self.model.pooling:
            with pytest.raises(grpc.RpcError) as caught:
                self._grant(pb.GRANT_TARGET_OFFICE_BALANCE, amount, office)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            return
        self._grant(pb.GRANT_TARGET_OFFICE_BALANCE, amount, office)
        self.model.own[office] += amount

    @rule(amount=st.integers(1, 100))
    def grant_ai(self, amount: int) -> None:
        self._grant(pb.GRANT_TARGET_AI_AGENT_CREDITS, amount)
        self.model.ai += amount

    @rule(enabled=st.booleans())
    def set_pooling(self, enabled: bool) -> None:
        response = self.stub.SetCreditPooling(
            pb.SetCreditPoolingRequest(
                request_id=self._request_id(),
                company_id=self.company_id,
                currency="USD",
                enabled=enabled,
            )
        )
        if enabled and not self.model.pooling:
            moved = sum(self.model.own.values())
            self.model.pool += moved
            self.model.own = dict.fromkeys(OFFICES, 0)
            if moved:
                self.model.top_up = self.model.pool
        self.model.pooling = enabled
        assert response.pooling.enabled == enabled
        assert response.company_pool_balance_minor == self.model.pool

    @rule(
        office=st.sampled_from(OFFICES),
        kind=st.sampled_from(sorted(KINDS)),
        amount=st.integers(1, 150),
        days_back=st.sampled_from([0, 0, 0, 3, 20, 40]),
    )
    def use(self, office: str, kind: str, amount: int, days_back: int) -> None:
        clock_now = self.clock.now()
        occurred = clock_now - timedelta(days=days_back)
        stamp = Timestamp()
        stamp.FromDatetime(occurred)
        request = pb.RecordUsageRequest(
            request_id=self._request_id(),
            company_id=self.company_id,
            office_id=self.ids[office],
            kind=KINDS[kind],
            amount_minor=amount,
            occur_time=stamp,
        )
        try:
            expected = self.model.use(office, kind, amount, _month(occurred), _month(clock_now))
        except LookupError:
            with pytest.raises(grpc.RpcError) as caught:
                self.stub.RecordUsage(request)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            return
        response = self.stub.RecordUsage(request)
        s = response.usage.split
        got = (
            s.allowance_minor,
            s.office_balance_minor,
            s.company_pool_minor,
            s.ai_agent_credits_minor,
            s.overage_minor,
        )
        assert got == expected
        self.done.append((request, response))

    # Caps and thresholds matter while pooling is on: set them then, so the usage rules
    # keep their share of the steps.
    @precondition(lambda self: self.model.pooling)
    @rule(office=st.sampled_from(OFFICES), cap=st.none() | st.integers(0, 150))
    def set_cap(self, office: str, cap: int | None) -> None:
        if cap is None:
            self.stub.ClearOfficeCreditCap(
                pb.ClearOfficeCreditCapRequest(
                    request_id=self._request_id(),
                    company_id=self.company_id,
                    office_id=self.ids[office],
                )
            )
            self.model.caps.pop(office, None)
            return
        response = self.stub.SetOfficeCreditCap(
            pb.SetOfficeCreditCapRequest(
                request_id=self._request_id(),
                company_id=self.company_id,
                office_id=self.ids[office],
                cap_minor=cap,
            )
        )
        self.model.caps[office] = cap
        month = _month(self.clock.now())
        assert response.cap.drawn_minor == self.model.pool_drawn.get((office, month), 0)

    @precondition(lambda self: self.model.pooling)
    @rule(
        thresholds=st.sets(
            st.tuples(st.just("balance_minor"), st.integers(0, 300))
            | st.tuples(st.just("percent"), st.integers(1, 99)),
            max_size=3,
        )
    )
    def set_thresholds(self, thresholds: set[tuple[str, int]]) -> None:
        self.stub.SetCreditThresholds(
            pb.SetCreditThresholdsRequest(
                request_id=self._request_id(),
                company_id=self.company_id,
                currency="USD",
                thresholds=[pb.CreditThreshold(**{kind: value}) for kind, value in thresholds],
            )
        )
        self.model.thresholds = set(thresholds)

    @precondition(lambda self: self.model.pooling and bool(self.model.caps))
    @rule(data=st.data(), amount=st.integers(1, 150))
    def use_capped(self, data: st.DataObject, amount: int) -> None:
        """A usage of a capped office while pooling is on (more steps where caps act)."""
        office = data.draw(st.sampled_from(sorted(self.model.caps)))
        self.use(office, "CALLING", amount, 0)

    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        if not self.done:
            return
        request, response = data.draw(st.sampled_from(self.done))
        assert self.stub.RecordUsage(request) == response

    @rule(days=st.integers(1, 40))
    def advance(self, days: int) -> None:
        self.clock.advance(days=days)

    @invariant()
    def balances_agree(self) -> None:
        if not self.model.allowance:
            return
        balances = self.stub.GetBalances(
            pb.GetBalancesRequest(company_id=self.company_id, currency="USD")
        )
        assert [p.balance_minor for p in balances.company_pools] == [self.model.pool]
        month = _month(self.clock.now())
        by_id = {o.office_id: o for o in balances.offices}
        for name in OFFICES:
            office = by_id[self.ids[name]]
            assert office.balance_minor == self.model.own[name]
            assert office.allowance_remaining_minor == self.model.allowance_left(name, month)
            assert office.consumed_minor == self.model.consumed[name]
            assert office.overage_minor == self.model.overage[name]
            assert office.ai_agent_credits_minor == (self.model.ai if name == "hq" else 0)
        check = self.stub.CheckLedger(pb.CheckLedgerRequest(company_id=self.company_id))
        assert check.consistent, check.violations

    @invariant()
    def caps_and_alerts_agree(self) -> None:
        if not self.model.allowance:
            return
        caps = self.stub.ListOfficeCreditCaps(
            pb.ListOfficeCreditCapsRequest(company_id=self.company_id)
        )
        month = _month(self.clock.now())
        names = {office_id: name for name, office_id in self.ids.items()}
        assert {names[c.office_id]: (c.cap_minor, c.drawn_minor) for c in caps.caps} == {
            name: (cap, self.model.pool_drawn.get((name, month), 0))
            for name, cap in self.model.caps.items()
        }
        alerts = self.stub.ListCreditAlerts(
            pb.ListCreditAlertsRequest(company_id=self.company_id, page_size=1000)
        )
        recorded = set()
        for alert in alerts.alerts:
            kind = alert.threshold.WhichOneof("level") or ""
            start = alert.period_start_time.ToDatetime(tzinfo=UTC)
            recorded.add((kind, getattr(alert.threshold, kind), _month(start)))
        assert len(recorded) == len(alerts.alerts)  # one per threshold per month
        assert recorded == self.model.alerted


async def test_service_matches_the_model(database_url: str) -> None:
    clock = FakeClock()
    async with running_credits(database_url, clock) as (app, _):
        channel = tls.sync_channel(f"127.0.0.1:{app.port}")
        CreditsMachine.stub = credits_pb2_grpc.CreditsServiceStub(channel)
        CreditsMachine.clock = clock
        machine = CreditsMachine.TestCase
        machine.settings = settings(
            max_examples=20,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        try:
            # The service runs on this event loop; the machine talks to it from a thread.
            await asyncio.to_thread(machine().runTest)
        finally:
            channel.close()
