"""The billing service in memory: its `Tx` (the same class the service uses) over
repositories kept in dictionaries, a unit of work with the same all-or-nothing
transactions, an in-memory pool behind billing's `Pool` gateway and in-memory credits
behind its `Credits` gateway.

The database's guarantees the use cases rely on are kept: one active plan per office
(a unique index), one purchase per request_id and per quote, one invoice per period,
statements that move a purchase on only while it is PENDING, one lease holder at a time.
The pool keeps what billing relies on: calls with a request_id replay their first
answer, a hold resolves once, units move between states as the pool moves them."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from libs.common.clock import FakeClock
from libs.common.errors import DomainError
from libs.common.license_catalog import catalog
from libs.common.reasons import Reason
from services.billing.adapters.credits import plan_allowance
from services.billing.domain import cycles, errors
from services.billing.domain.model import (
    Availability,
    Held,
    HoldState,
    Invoice,
    OfficeCounts,
    PeriodOverage,
    Plan,
    PlanKind,
    PoolCounts,
    PoolEntry,
    PoolPreview,
    Purchase,
    PurchaseCharge,
    PurchaseState,
    Quote,
    ScheduledUnit,
    Snapshot,
    Split,
)
from services.billing.domain.purchase import Step
from services.billing.unit_of_work import Tx
from tests.fakes.unit_of_work import (
    EventTable,
    InMemoryOutbox,
    InMemoryRequestLog,
    InMemoryUnitOfWork,
    RequestTable,
)

# --- billing's tables ---------------------------------------------------------------------


@dataclass
class StoredPurchase:
    purchase: Purchase
    fingerprint: bytes
    lease_owner: uuid.UUID | None = None
    leased: bool = False  # a lease is live (tests end it with `end_leases`)
    invoice_id: uuid.UUID | None = None  # the invoice that carries its charge


@dataclass
class BillingState:
    requests: RequestTable = field(default_factory=RequestTable)
    events: EventTable = field(default_factory=EventTable)
    plans: dict[uuid.UUID, Plan] = field(default_factory=dict)
    quotes: dict[uuid.UUID, Quote] = field(default_factory=dict)
    purchases: dict[uuid.UUID, StoredPurchase] = field(default_factory=dict)
    invoices: dict[uuid.UUID, tuple[Invoice, bool]] = field(default_factory=dict)

    def end_leases(self) -> None:
        """Every lease ends (its driver died, seconds have passed)."""
        for stored in self.purchases.values():
            stored.leased = False


def _period(purchase: Purchase) -> str:
    """The period a purchase's charge belongs to (the repository keeps it as a column)."""
    return purchase.cycle.start.strftime("%Y-%m")


class FakeInstants:
    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    async def now(self) -> datetime:
        return self._clock.now()


class FakePlans:
    def __init__(self, tables: BillingState) -> None:
        self._t = tables

    def _clash(self, plan: Plan) -> bool:
        return plan.active and any(
            p.active and p.office_id == plan.office_id and p.plan_id != plan.plan_id
            for p in self._t.plans.values()
        )

    async def insert(self, plan: Plan) -> Plan:
        if self._clash(plan):
            raise errors.office_has_active_plan(plan.office_id)
        self._t.plans[plan.plan_id] = plan
        return plan

    async def update(self, plan: Plan) -> Plan:
        if self._clash(plan):
            raise errors.office_has_active_plan(plan.office_id)
        self._t.plans[plan.plan_id] = plan
        return plan

    async def clear_primary(
        self, company_id: uuid.UUID, office_id: uuid.UUID, now: datetime
    ) -> None:
        for plan in list(self._t.plans.values()):
            if plan.company_id == company_id and plan.primary and plan.office_id != office_id:
                self._t.plans[plan.plan_id] = replace(plan, primary=False, updated_at=now)

    async def get(self, company_id: uuid.UUID, plan_id: uuid.UUID) -> Plan | None:
        plan = self._t.plans.get(plan_id)
        return plan if plan is not None and plan.company_id == company_id else None

    async def active(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Plan | None:
        return next(
            (
                p
                for p in self._t.plans.values()
                if p.company_id == company_id and p.office_id == office_id and p.active
            ),
            None,
        )

    async def latest(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Plan | None:
        own = [
            p
            for p in self._t.plans.values()
            if p.company_id == company_id and p.office_id == office_id
        ]
        return max(own, key=lambda p: (p.updated_at, str(p.plan_id)), default=None)

    async def office_owner(self, office_id: uuid.UUID) -> uuid.UUID | None:
        return next(
            (p.company_id for p in self._t.plans.values() if p.office_id == office_id), None
        )

    async def of_company(self, company_id: uuid.UUID, currency: str | None = None) -> list[Plan]:
        return sorted(
            (
                p
                for p in self._t.plans.values()
                if p.company_id == company_id and currency in (None, p.currency)
            ),
            key=lambda p: (p.start_at, str(p.plan_id)),
        )

    async def page(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        currency: str | None,
        active_only: bool,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Plan]:
        found = [
            p
            for p in await self.of_company(company_id, currency)
            if office_id in (None, p.office_id)
            and (p.active or not active_only)
            and (after is None or (p.start_at, str(p.plan_id)) > after)
        ]
        return found[:limit]


class FakeQuotes:
    def __init__(self, tables: BillingState) -> None:
        self._t = tables

    async def insert(self, quote: Quote) -> None:
        assert quote.quote_id is not None
        self._t.quotes[quote.quote_id] = quote

    async def get(self, company_id: uuid.UUID, quote_id: uuid.UUID) -> Quote | None:
        quote = self._t.quotes.get(quote_id)
        return quote if quote is not None and quote.company_id == company_id else None


class FakePurchases:
    def __init__(self, tables: BillingState) -> None:
        self._t = tables

    def _pending(self, purchase_id: uuid.UUID) -> StoredPurchase | None:
        stored = self._t.purchases.get(purchase_id)
        return stored if stored and stored.purchase.state is PurchaseState.PENDING else None

    def _update(self, purchase_id: uuid.UUID, **changes: object) -> Purchase | None:
        stored = self._pending(purchase_id)
        if stored is None:
            return None
        stored.purchase = replace(stored.purchase, **changes)  # type: ignore[arg-type]
        return stored.purchase

    async def insert(
        self, purchase: Purchase, fingerprint: bytes, owner: uuid.UUID, lease_seconds: float
    ) -> bool:
        for stored in self._t.purchases.values():
            taken = stored.purchase
            if (taken.company_id, taken.request_id) == (purchase.company_id, purchase.request_id):
                return False
            if purchase.quote_id is not None and taken.quote_id == purchase.quote_id:
                return False
        step = Step(purchase.step)
        self._t.purchases[purchase.purchase_id] = StoredPurchase(
            replace(purchase, step=step), fingerprint, owner, True
        )
        return True

    async def by_request(
        self, company_id: uuid.UUID, request_id: str
    ) -> tuple[Purchase, bytes] | None:
        for stored in self._t.purchases.values():
            if (stored.purchase.company_id, stored.purchase.request_id) == (
                company_id,
                request_id,
            ):
                return stored.purchase, stored.fingerprint
        return None

    async def of_quote(self, company_id: uuid.UUID, quote_id: uuid.UUID) -> Purchase | None:
        return next(
            (
                s.purchase
                for s in self._t.purchases.values()
                if (s.purchase.company_id, s.purchase.quote_id) == (company_id, quote_id)
            ),
            None,
        )

    async def get(self, company_id: uuid.UUID, purchase_id: uuid.UUID) -> Purchase | None:
        stored = self._t.purchases.get(purchase_id)
        if stored is None or stored.purchase.company_id != company_id:
            return None
        return stored.purchase

    async def page(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        period: str | None,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Purchase]:
        found = sorted(
            (
                s.purchase
                for s in self._t.purchases.values()
                if s.purchase.company_id == company_id
                and office_id in (None, s.purchase.office_id)
                and period in (None, _period(s.purchase))
            ),
            key=lambda p: (p.purchased_at, p.purchase_id),
            reverse=True,
        )
        if before is not None:
            found = [p for p in found if (p.purchased_at, p.purchase_id) < before]
        return found[:limit]

    async def take_lease(
        self, company_id: uuid.UUID, purchase_id: uuid.UUID, owner: uuid.UUID, seconds: float
    ) -> bool:
        stored = self._pending(purchase_id)
        if stored is None or stored.leased:
            return False
        stored.lease_owner, stored.leased = owner, True
        return True

    async def renew_leases(
        self, leases: Sequence[tuple[tuple[uuid.UUID, uuid.UUID], uuid.UUID]], seconds: float
    ) -> list[uuid.UUID]:
        return [
            owner
            for (_, purchase_id), owner in leases
            if (s := self._pending(purchase_id)) is not None and s.lease_owner == owner
        ]

    async def drop_lease(
        self, company_id: uuid.UUID, purchase_id: uuid.UUID, owner: uuid.UUID
    ) -> None:
        stored = self._t.purchases.get(purchase_id)
        if stored is not None and stored.lease_owner == owner:
            stored.lease_owner, stored.leased = None, False

    async def restart_failed(
        self, company_id: uuid.UUID, purchase_id: uuid.UUID, owner: uuid.UUID, seconds: float
    ) -> Purchase | None:
        stored = self._t.purchases.get(purchase_id)
        if stored is None or stored.purchase.state is not PurchaseState.FAILED:
            return None
        stored.purchase = replace(
            stored.purchase,
            state=PurchaseState.PENDING,
            attempt=stored.purchase.attempt + 1,
            step=Step.CREATED,
            restored=None,
            split=None,
            hold_id=None,
            reserve_quantity=None,
            unit_ids=(),
            resolved_at=None,
            failure_kind=None,
            failure_reason=None,
            failure_message=None,
        )
        stored.lease_owner, stored.leased = owner, True
        return stored.purchase

    async def set_step(self, company_id: uuid.UUID, purchase_id: uuid.UUID, step: Step) -> None:
        self._update(purchase_id, step=step)

    async def begin_undo(
        self, company_id: uuid.UUID, purchase_id: uuid.UUID, step: Step, error: DomainError
    ) -> None:
        self._update(
            purchase_id,
            step=step,
            failure_kind=error.kind.value,
            failure_reason=error.reason,
            failure_message=error.message,
        )

    async def past_pivot(self, company_id: uuid.UUID, purchase_id: uuid.UUID) -> None:
        self._update(
            purchase_id,
            step=Step.COMMITTING,
            failure_kind=None,
            failure_reason=None,
            failure_message=None,
        )

    async def set_reserving(
        self,
        company_id: uuid.UUID,
        purchase_id: uuid.UUID,
        quantity: int,
        restored: Sequence[uuid.UUID],
    ) -> None:
        self._update(
            purchase_id,
            step=Step.RESERVING,
            reserve_quantity=quantity,
            restored=len(restored),
            unit_ids=tuple(restored),
        )

    async def set_split(
        self,
        company_id: uuid.UUID,
        purchase_id: uuid.UUID,
        step: Step,
        split: Split,
        hold_id: uuid.UUID | None,
        unit_ids: Sequence[uuid.UUID],
    ) -> None:
        self._update(
            purchase_id,
            step=step,
            split=split,
            restored=split.restored,
            hold_id=hold_id,
            unit_ids=tuple(unit_ids),
        )

    async def set_committed(
        self,
        company_id: uuid.UUID,
        purchase_id: uuid.UUID,
        step: Step,
        unit_ids: Sequence[uuid.UUID],
    ) -> None:
        self._update(purchase_id, step=step, unit_ids=tuple(unit_ids))

    async def complete(
        self,
        company_id: uuid.UUID,
        purchase_id: uuid.UUID,
        split: Split,
        amount: int,
        unit_ids: Sequence[uuid.UUID],
        now: datetime,
    ) -> Purchase | None:
        done = self._update(
            purchase_id,
            state=PurchaseState.COMPLETED,
            step=Step.DONE,
            split=split,
            restored=split.restored,
            amount=amount,
            unit_ids=tuple(unit_ids),
            resolved_at=now,
        )
        if done is not None:
            self._t.purchases[purchase_id].leased = False
        return done

    async def fail(
        self, company_id: uuid.UUID, purchase_id: uuid.UUID, error: DomainError, now: datetime
    ) -> Purchase | None:
        failed = self._update(
            purchase_id,
            state=PurchaseState.FAILED,
            step=Step.UNDONE,
            amount=0,
            unit_ids=(),
            resolved_at=now,
            failure_kind=error.kind.value,
            failure_reason=error.reason,
            failure_message=error.message,
        )
        if failed is not None:
            self._t.purchases[purchase_id].leased = False
        return failed

    async def interrupted(self, limit: int) -> list[tuple[uuid.UUID, str]]:
        return [
            (s.purchase.company_id, s.purchase.request_id)
            for s in self._t.purchases.values()
            if s.purchase.state is PurchaseState.PENDING and not s.leased
        ][:limit]

    async def claim_charges(
        self, company_id: uuid.UUID, period: str, invoice_id: uuid.UUID, live_at: datetime
    ) -> list[PurchaseCharge]:
        following = cycles.next_period(period)
        claimed = sorted(
            (
                s
                for s in self._t.purchases.values()
                if s.purchase.company_id == company_id
                and s.purchase.state is PurchaseState.COMPLETED
                and s.purchase.split is not None
                and s.purchase.split.new > 0
                and s.invoice_id is None
                and (
                    _period(s.purchase) <= period
                    or (
                        _period(s.purchase) == following
                        and s.purchase.resolved_at is not None
                        and s.purchase.resolved_at <= live_at
                    )
                )
            ),
            key=lambda s: (s.purchase.purchased_at, s.purchase.purchase_id),
        )
        for stored in claimed:
            stored.invoice_id = invoice_id
        return [
            PurchaseCharge(
                p.purchase_id,
                p.office_id,
                p.plan_id,
                p.license_type,
                p.currency,
                p.split.new if p.split else 0,
                p.amount,
                p.purchased_at,
                _period(p),
                p.unit_price,
            )
            for p in (s.purchase for s in claimed)
        ]

    async def adding_unclaimed(self, company_id: uuid.UUID, period: str) -> int:
        return sum(
            1
            for s in self._t.purchases.values()
            if s.purchase.company_id == company_id
            and _period(s.purchase) == period
            and s.purchase.split is not None
            and s.purchase.split.new > 0
            and s.invoice_id is None
            and (
                s.purchase.state is PurchaseState.COMPLETED
                or (s.purchase.state is PurchaseState.PENDING and s.purchase.step is Step.ADDING)
            )
        )

    async def pending_in_period(self, company_id: uuid.UUID, period: str) -> int:
        return sum(
            1
            for s in self._t.purchases.values()
            if s.purchase.company_id == company_id
            and _period(s.purchase) == period
            and s.purchase.state is PurchaseState.PENDING
        )


class FakeInvoices:
    def __init__(self, tables: BillingState) -> None:
        self._t = tables

    async def insert(self, invoice: Invoice) -> bool:
        if await self.of_period(invoice.company_id, invoice.period) is not None:
            return False
        self._t.invoices[invoice.invoice_id] = (invoice, False)
        return True

    async def of_period(self, company_id: uuid.UUID, period: str) -> tuple[Invoice, bool] | None:
        return next(
            (
                found
                for found in self._t.invoices.values()
                if (found[0].company_id, found[0].period) == (company_id, period)
            ),
            None,
        )

    async def get(self, company_id: uuid.UUID, invoice_id: uuid.UUID) -> Invoice | None:
        found = self._t.invoices.get(invoice_id)
        return found[0] if found is not None and found[0].company_id == company_id else None

    async def page(self, company_id: uuid.UUID, before: str | None, limit: int) -> list[Invoice]:
        found = sorted(
            (
                i
                for i, _ in self._t.invoices.values()
                if i.company_id == company_id and (before is None or i.period < before)
            ),
            key=lambda i: i.period,
            reverse=True,
        )
        return found[:limit]

    async def terminations_done(
        self, company_id: uuid.UUID, invoice_id: uuid.UUID, count: int
    ) -> None:
        invoice, done = self._t.invoices[invoice_id]
        if not done:
            self._t.invoices[invoice_id] = (replace(invoice, terminated_units=count), True)


class FakeRequestIds:
    async def purge(self, retention_hours: int) -> int:
        return 0


class InMemoryBillingUnitOfWork(InMemoryUnitOfWork[BillingState, Tx]):
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

        def bind(tables: BillingState) -> Tx:
            return Tx(
                instants=FakeInstants(clock),  # type: ignore[arg-type]
                plans=FakePlans(tables),  # type: ignore[arg-type]
                quotes=FakeQuotes(tables),  # type: ignore[arg-type]
                purchases=FakePurchases(tables),  # type: ignore[arg-type]
                invoices=FakeInvoices(tables),  # type: ignore[arg-type]
                requests=InMemoryRequestLog(tables.requests),
                request_ids=FakeRequestIds(),  # type: ignore[arg-type]
                events=InMemoryOutbox(tables.events),
            )

        super().__init__(BillingState(), bind)


# --- the pool, as billing sees it ---------------------------------------------------------


@dataclass
class PoolUnit:
    unit_id: str
    company_id: uuid.UUID
    office_id: uuid.UUID | None  # None: resting in the pool
    currency: str
    license_type: str
    state: str  # SPARE, REMOVAL_SCHEDULED, POOLED, HELD, ASSIGNED, TERMINATED
    in_grace_of: uuid.UUID | None = None  # POOLED: returned by this office, still in grace
    held_from: str | None = None
    changed_at: datetime | None = None  # the last change of state


@dataclass
class PoolHold:
    hold_id: uuid.UUID
    company_id: uuid.UUID
    office_id: uuid.UUID
    unit_ids: tuple[str, ...]
    expires_at: datetime
    state: HoldState = HoldState.PENDING


@dataclass
class PoolOffice:
    currency: str
    kind: PlanKind | None  # None: no active plan (NONE)
    primary: bool


class FakePool:
    """Billing's `Pool` in memory. `refuse(method, error)` makes the next call of a
    method fail with `error` (before it does anything); `calls` lists every call made."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.offices: dict[tuple[uuid.UUID, uuid.UUID], PoolOffice] = {}
        self.enabled: set[tuple[uuid.UUID, str]] = set()
        self.units: dict[str, PoolUnit] = {}
        self.holds: dict[uuid.UUID, PoolHold] = {}
        self.calls: list[str] = []
        self.origins: dict[str, str] = {}  # what each unit was created for (AddUnits)
        self._replies: dict[str, tuple[str, object]] = {}
        self._refusals: dict[str, list[DomainError]] = {}
        self._ids = itertools.count(1)

    # --- test setup and checks ------------------------------------------------------------

    def refuse(self, method: str, error: DomainError, times: int = 1) -> None:
        self._refusals.setdefault(method, []).extend([error] * times)

    def forgive(self) -> None:
        """Refusals not used yet are dropped (the outage is over)."""
        self._refusals.clear()

    def add(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        license_type: str,
        n: int,
        **kw: object,
    ) -> list[str]:
        """`n` units (SPARE of the office, or as `kw` says), currency from the office."""
        currency = str(kw.pop("currency", "USD"))
        state = str(kw.pop("state", "SPARE"))
        kw.setdefault("changed_at", self._clock.now())
        made = []
        for _ in range(n):
            unit_id = str(uuid.UUID(int=next(self._ids)))
            self.units[unit_id] = PoolUnit(
                unit_id,
                company_id,
                office_id,
                currency,
                license_type,
                state,
                **kw,  # type: ignore[arg-type]
            )
            made.append(unit_id)
        return made

    def states(self, office_id: uuid.UUID | None = None) -> Counter[str]:
        return Counter(
            u.state for u in self.units.values() if office_id is None or u.office_id == office_id
        )

    def pool_calls(self) -> int:
        return len(self.calls)

    # --- the gateway ----------------------------------------------------------------------

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        waiting = self._refusals.get(method)
        if waiting:
            raise waiting.pop(0)

    def _replayed(self, method: str, request_id: str) -> tuple[bool, object]:
        found = self._replies.get(request_id)
        if found is None:
            return False, None
        assert found[0] == method, f"request_id {request_id} reused for {method}"
        return True, found[1]

    def _reply(self, method: str, request_id: str, value: object) -> None:
        self._replies[request_id] = (method, value)

    def _of(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_type: str, state: str
    ) -> list[PoolUnit]:
        return sorted(
            (
                u
                for u in self.units.values()
                if u.company_id == company_id
                and u.office_id == office_id
                and u.license_type == license_type
                and u.state == state
            ),
            key=lambda u: u.unit_id,
        )

    async def put_office(self, request_id: str, plan: Plan) -> None:
        self._enter("put_office")
        kind = plan.kind if plan.active else None
        if kind is PlanKind.LEGACY and (plan.company_id, plan.currency) in self.enabled:
            raise Reason.LEGACY_PLAN_IN_CURRENCY.error(f"{plan.currency} is pooled")
        self.offices[(plan.company_id, plan.office_id)] = PoolOffice(
            plan.currency, kind, plan.primary
        )

    async def pool_enabled(self, company_id: uuid.UUID, currency: str) -> bool:
        self._enter("pool_enabled")
        return (company_id, currency) in self.enabled

    async def preview_enable(self, company_id: uuid.UUID, currency: str) -> PoolPreview:
        self._enter("preview_enable")
        of_currency = sorted(
            (office_id, office)
            for (company, office_id), office in self.offices.items()
            if company == company_id and office.currency == currency
        )
        if (company_id, currency) in self.enabled:
            return PoolPreview(refusal_reason="POOL_ALREADY_ENABLED", refusal_message="on")
        if any(office.kind is PlanKind.LEGACY for _, office in of_currency):
            return PoolPreview(refusal_reason="LEGACY_PLAN_IN_CURRENCY", refusal_message="legacy")
        entering = Counter(
            (u.office_id, u.license_type)
            for u in self.units.values()
            if u.company_id == company_id
            and u.currency == currency
            and u.state == "SPARE"
            and u.office_id is not None
            and catalog()[u.license_type].poolable
        )
        return PoolPreview(
            entries=tuple(
                PoolEntry(office_id, license_type, n)
                for (office_id, license_type), n in sorted(entering.items(), key=str)
                if office_id is not None
            ),
            office_ids=tuple(office_id for office_id, _ in of_currency),
        )

    def _claimable(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_type: str
    ) -> tuple[list[PoolUnit], list[PoolUnit]]:
        office = self.offices[(company_id, office_id)]
        pooled = [
            u
            for u in sorted(self.units.values(), key=lambda u: u.unit_id)
            if u.company_id == company_id
            and u.state == "POOLED"
            and u.currency == office.currency
            and u.license_type == license_type
        ]
        own = [u for u in pooled if u.in_grace_of == office_id]
        claimable = [u for u in pooled if u.in_grace_of is None]
        return own, claimable

    async def availability(
        self, company_id: uuid.UUID, office_id: uuid.UUID, license_type: str
    ) -> Availability:
        self._enter("availability")
        own, claimable = self._claimable(company_id, office_id, license_type)
        return Availability(
            own_spare=len(self._of(company_id, office_id, license_type, "SPARE")),
            own_returns_in_grace=len(own),
            pool_claimable=len(claimable)
            if (company_id, self.offices[(company_id, office_id)].currency) in self.enabled
            else 0,
            removal_scheduled=len(
                self._of(company_id, office_id, license_type, "REMOVAL_SCHEDULED")
            ),
        )

    async def reserve(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        ttl_seconds: int,
    ) -> Held | None:
        self._enter("reserve")
        done, value = self._replayed("reserve", request_id)
        if done:
            return value  # type: ignore[return-value]
        own, claimable = self._claimable(company_id, office_id, license_type)
        taken = (own + claimable)[:quantity]
        if not taken:
            raise Reason.NO_LICENSE_AVAILABLE.error("nothing to hold")
        hold = PoolHold(
            uuid.uuid4(),
            company_id,
            office_id,
            tuple(u.unit_id for u in taken),
            self._clock.now() + timedelta(seconds=ttl_seconds),
        )
        for unit in taken:
            unit.held_from, unit.state = unit.state, "HELD"
        self.holds[hold.hold_id] = hold
        own_taken = sum(1 for u in taken if u.in_grace_of == office_id)
        held = Held(hold.hold_id, hold.unit_ids, hold.expires_at, own_taken)
        self._reply("reserve", request_id, held)
        return held

    def _resolve(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> PoolHold:
        hold = self.holds.get(hold_id)
        if hold is None or hold.company_id != company_id:
            raise Reason.HOLD_NOT_FOUND.error("no such hold")
        if hold.state is not HoldState.PENDING:
            raise Reason.HOLD_NOT_PENDING.error("the hold was resolved")
        return hold

    async def commit(
        self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID
    ) -> tuple[str, ...]:
        self._enter("commit")
        done, value = self._replayed("commit", request_id)
        if done:
            return value  # type: ignore[return-value]
        hold = self._resolve(company_id, hold_id)
        for unit_id in hold.unit_ids:
            unit = self.units[unit_id]
            unit.state, unit.office_id, unit.in_grace_of, unit.held_from = (
                "SPARE",
                hold.office_id,
                None,
                None,
            )
        hold.state = HoldState.COMMITTED
        self._reply("commit", request_id, hold.unit_ids)
        return hold.unit_ids

    async def release(self, request_id: str, company_id: uuid.UUID, hold_id: uuid.UUID) -> None:
        self._enter("release")
        done, _ = self._replayed("release", request_id)
        if done:
            return
        hold = self._resolve(company_id, hold_id)
        for unit_id in hold.unit_ids:
            unit = self.units[unit_id]
            unit.state, unit.held_from = unit.held_from or "POOLED", None
        hold.state = HoldState.RELEASED
        self._reply("release", request_id, None)

    def expire(self, hold_id: uuid.UUID) -> None:
        """The hold's lifetime ends: its units go back where they were."""
        hold = self.holds[hold_id]
        for unit_id in hold.unit_ids:
            unit = self.units[unit_id]
            unit.state, unit.held_from = unit.held_from or "POOLED", None
        hold.state = HoldState.EXPIRED

    async def hold_state(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> HoldState:
        self._enter("hold_state")
        hold = self.holds.get(hold_id)
        if hold is None or hold.company_id != company_id:
            raise Reason.HOLD_NOT_FOUND.error("no such hold")
        return hold.state

    async def add_units(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
        origin: str = "",
    ) -> tuple[str, ...]:
        self._enter("add_units")
        done, value = self._replayed("add_units", request_id)
        if done:
            return value  # type: ignore[return-value]
        currency = self.offices[(company_id, office_id)].currency
        made = tuple(self.add(company_id, office_id, license_type, quantity, currency=currency))
        self.origins.update((unit_id, origin) for unit_id in made)
        self._reply("add_units", request_id, made)
        return made

    async def mark_for_removal(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
    ) -> tuple[str, ...]:
        self._enter("mark_for_removal")
        done, value = self._replayed("mark_for_removal", request_id)
        if done:
            return value  # type: ignore[return-value]
        spare = self._of(company_id, office_id, license_type, "SPARE")
        if len(spare) < quantity:
            raise Reason.NOT_ENOUGH_SPARE.error(f"{len(spare)} spare, {quantity} asked")
        for unit in spare[:quantity]:
            unit.state, unit.changed_at = "REMOVAL_SCHEDULED", self._clock.now()
        marked = tuple(u.unit_id for u in spare[:quantity])
        self._reply("mark_for_removal", request_id, marked)
        return marked

    async def restore_from_removal(
        self,
        request_id: str,
        company_id: uuid.UUID,
        office_id: uuid.UUID,
        license_type: str,
        quantity: int,
    ) -> tuple[str, ...]:
        self._enter("restore_from_removal")
        done, value = self._replayed("restore_from_removal", request_id)
        if done:
            return value  # type: ignore[return-value]
        scheduled = self._of(company_id, office_id, license_type, "REMOVAL_SCHEDULED")[:quantity]
        for unit in scheduled:
            unit.state, unit.changed_at = "SPARE", self._clock.now()
        restored = tuple(u.unit_id for u in scheduled)
        self._reply("restore_from_removal", request_id, restored)
        return restored

    async def terminate_units(
        self, request_id: str, company_id: uuid.UUID, unit_ids: Sequence[str]
    ) -> None:
        self._enter("terminate_units")
        for unit_id in unit_ids:
            unit = self.units[unit_id]
            if unit.state in ("ASSIGNED", "HELD"):
                raise Reason.UNIT_IN_USE.error("in use")
            unit.state, unit.changed_at = "TERMINATED", self._clock.now()

    async def snapshot(self, company_id: uuid.UUID) -> Snapshot:
        self._enter("snapshot")
        offices: dict[tuple[uuid.UUID, str, str], Counter[str]] = {}
        pools: dict[tuple[str, str], Counter[str]] = {}
        live = 0
        for unit in self.units.values():
            if unit.company_id != company_id or unit.state == "TERMINATED":
                continue
            live += 1
            if unit.office_id is None or unit.state == "POOLED" or unit.held_from == "POOLED":
                pools.setdefault((unit.currency, unit.license_type), Counter())[unit.state] += 1
            else:
                key = (unit.office_id, unit.currency, unit.license_type)
                offices.setdefault(key, Counter())[unit.state] += 1
        return Snapshot(
            taken_at=self._clock.now(),
            offices=tuple(
                OfficeCounts(
                    office_id,
                    currency,
                    license_type,
                    assigned=c["ASSIGNED"],
                    spare=c["SPARE"],
                    held=c["HELD"],
                    removal_scheduled=c["REMOVAL_SCHEDULED"],
                )
                for (office_id, currency, license_type), c in sorted(offices.items(), key=str)
            ),
            pools=tuple(
                PoolCounts(currency, license_type, c["POOLED"], c["HELD"])
                for (currency, license_type), c in sorted(pools.items())
            ),
            live_units=live,
        )

    async def scheduled_for_removal(self, company_id: uuid.UUID) -> list[ScheduledUnit]:
        self._enter("scheduled_for_removal")
        return [
            ScheduledUnit(u.unit_id, u.office_id, u.changed_at)
            for u in sorted(self.units.values(), key=lambda u: u.unit_id)
            if u.company_id == company_id
            and u.state == "REMOVAL_SCHEDULED"
            and u.office_id is not None
            and u.changed_at is not None
        ]


# --- the credits service, as billing sees it ----------------------------------------------


@dataclass
class CreditAccount:
    """The facts billing keeps in step with a plan (the overage policy is not billing's)."""

    currency: str
    primary: bool
    allowance: int
    period_anchor: datetime


class FakeCredits:
    """Billing's `Credits` in memory: accounts as billing put them, the overage tests
    record with `owe`, `refuse(method, error)` and `calls` as FakePool's."""

    def __init__(self) -> None:
        self.accounts: dict[tuple[uuid.UUID, uuid.UUID], CreditAccount] = {}
        self.owed: list[tuple[uuid.UUID, PeriodOverage]] = []
        self.calls: list[str] = []
        self._refusals: dict[str, list[DomainError]] = {}

    def refuse(self, method: str, error: DomainError, times: int = 1) -> None:
        self._refusals.setdefault(method, []).extend([error] * times)

    def owe(
        self, company_id: uuid.UUID, office_id: uuid.UUID, start: datetime, amount: int
    ) -> None:
        """The office's credit period starting at `start` (a month long) has overage."""
        end = start.replace(month=start.month % 12 + 1, year=start.year + start.month // 12)
        self.owed.append((company_id, PeriodOverage(office_id, "USD", start, end, amount)))

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        waiting = self._refusals.get(method)
        if waiting:
            raise waiting.pop(0)

    async def put_account(self, request_id: str, plan: Plan) -> None:
        self._enter("put_account")
        self.accounts[(plan.company_id, plan.office_id)] = CreditAccount(
            plan.currency, plan.primary, plan_allowance(plan), plan.start_at
        )

    async def period_overage(
        self, company_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[PeriodOverage]:
        self._enter("period_overage")
        return [
            owed
            for company, owed in self.owed
            if company == company_id and start <= owed.period_start < end
        ]
