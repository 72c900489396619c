"""The pool's unit of work in memory: the same `Tx` shape as `services/pool/unit_of_work.py`,
its repositories over dicts, and the same answers as their statements.

What a statement selects by a rule of the product (the candidates of an allocation, what
a source offers), the fake selects by the same rule in `domain/` (`allocation.offers`,
`allocation.order_of`), so use-case tests exercise the rule rather than a copy of it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from libs.common.clock import FakeClock
from libs.common.idempotency import IdempotencyKey
from services.pool.domain import allocation
from services.pool.domain.allocation import ALLOCATION_RULES, Bystanders, Grace
from services.pool.domain.history import Cause, EventKind, EventQuery, UnitEvent
from services.pool.domain.model import (
    Assignee,
    Availability,
    Hold,
    HoldState,
    Office,
    PlanKind,
    Pool,
    PoolContent,
    Receipt,
    Source,
    Unit,
    UnitCount,
    UnitState,
)
from services.pool.repository.allocation import CandidateQuery, Handout, Opened
from tests.fakes.unit_of_work import (
    EventTable,
    InMemoryOutbox,
    InMemoryRequestLog,
    InMemoryUnitOfWork,
    RequestTable,
)

FREE = (UnitState.SPARE, UnitState.POOLED)


@dataclass
class PoolState:
    """The pool's tables."""

    requests: RequestTable = field(default_factory=RequestTable)
    events: EventTable = field(default_factory=EventTable)
    offices: dict[uuid.UUID, Office] = field(default_factory=dict)
    pools: dict[tuple[uuid.UUID, str], datetime] = field(default_factory=dict)  # enabled_at
    units: dict[uuid.UUID, Unit] = field(default_factory=dict)
    holds: dict[uuid.UUID, Hold] = field(default_factory=dict)
    receipts: dict[uuid.UUID, Receipt] = field(default_factory=dict)
    locks: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # every lock taken
    analyzed: int = 0  # planner statistics refreshed
    unit_events: list[UnitEvent] = field(default_factory=list)  # unit history, in order
    horizons: dict[uuid.UUID, datetime] = field(default_factory=dict)  # history started
    last_event_id: int = 0


@dataclass(frozen=True, slots=True)
class _Why:
    """What an event says besides the unit (the fake's `recorded` columns)."""

    kind: EventKind
    cause: Cause
    hold_id: uuid.UUID | None = None  # replaces the unit's (the hold a unit left)
    for_office_id: uuid.UUID | None = None
    source: Source | None = None
    receipt_id: uuid.UUID | None = None


class _Table:
    def __init__(self, state: PoolState) -> None:
        self.state = state

    def _set(
        self, unit: Unit, now: datetime | None = None, why: _Why | None = None, **changes: object
    ) -> Unit:
        changed = replace(unit, **changes, updated_at=now or unit.updated_at)  # type: ignore[arg-type]
        self.state.units[unit.unit_id] = changed
        if why is not None:
            assert now is not None, "an event has an instant"
            self._record(changed, now, why)
        return changed

    def _record(self, unit: Unit, now: datetime, why: _Why) -> None:
        """One event: the unit as the change left it (`repository/history.recorded`)."""
        self.state.last_event_id += 1
        self.state.unit_events.append(
            UnitEvent(
                event_id=self.state.last_event_id,
                company_id=unit.company_id,
                unit_id=unit.unit_id,
                occurred_at=now,
                kind=why.kind,
                state=unit.state,
                office_id=unit.office_id,
                held_from=unit.held_from,
                for_office_id=why.for_office_id,
                source=why.source,
                assignee=unit.assignee,
                claimable_at=unit.claimable_at,
                hold_id=why.hold_id or unit.hold_id,
                receipt_id=why.receipt_id,
                request_id=why.cause.request_id,
                origin=why.cause.origin,
            )
        )

    def _of(self, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]) -> list[Unit]:
        found = (self.state.units.get(u) for u in unit_ids)
        return sorted(
            (u for u in found if u is not None and u.company_id == company_id),
            key=lambda u: u.unit_id,
        )


class FakeLocks(_Table):
    def __init__(self, state: PoolState, clock: FakeClock) -> None:
        super().__init__(state)
        self._clock = clock

    async def take(self, company_id: uuid.UUID, currency: str) -> datetime:
        return await self.take_all([(company_id, currency)])

    async def take_all(self, keys: Sequence[tuple[uuid.UUID, str]]) -> datetime:
        self.state.locks.extend(sorted(set(keys), key=lambda k: (str(k[0]), k[1])))
        return self._clock.now()

    async def now(self) -> datetime:
        return self._clock.now()


class FakeOffices(_Table):
    async def get(self, company_id: uuid.UUID, office_id: uuid.UUID) -> Office | None:
        office = self.state.offices.get(office_id)
        return office if office is not None and office.company_id == company_id else None

    async def owner(self, office_id: uuid.UUID) -> uuid.UUID | None:
        office = self.state.offices.get(office_id)
        return office.company_id if office else None

    async def put(self, office: Office) -> Office | None:
        current = self.state.offices.get(office.office_id)
        if current is not None and current.company_id != office.company_id:
            return None
        if office.primary:
            for other in list(self.state.offices.values()):
                if other.company_id == office.company_id and other.office_id != office.office_id:
                    self.state.offices[other.office_id] = replace(other, primary=False)
        office = replace(
            office,
            display_name=office.display_name or (current.display_name if current else ""),
            created_at=current.created_at if current else datetime.now(UTC),
        )
        self.state.offices[office.office_id] = office
        return office

    async def page(
        self, company_id: uuid.UUID, currency: str | None, after: uuid.UUID | None, limit: int
    ) -> list[Office]:
        found = sorted(
            (
                o
                for o in self.state.offices.values()
                if o.company_id == company_id
                and (currency is None or o.currency == currency)
                and (after is None or o.office_id > after)
            ),
            key=lambda o: o.office_id,
        )
        return found[:limit]

    async def of_currency(
        self, company_id: uuid.UUID, currency: str, plan_kind: PlanKind | None = None
    ) -> list[uuid.UUID]:
        return sorted(
            o.office_id
            for o in self.state.offices.values()
            if o.company_id == company_id
            and o.currency == currency
            and (plan_kind is None or o.plan_kind is plan_kind)
        )


class FakePools(_Table):
    async def get(self, company_id: uuid.UUID, currency: str) -> Pool:
        return Pool(company_id, currency, self.state.pools.get((company_id, currency)))

    async def insert(self, company_id: uuid.UUID, currency: str, now: datetime) -> Pool:
        assert (company_id, currency) not in self.state.pools, "primary key"
        self.state.pools[(company_id, currency)] = now
        return Pool(company_id, currency, now)

    async def contents(
        self, company_id: uuid.UUID, currency: str, now: datetime
    ) -> list[PoolContent]:
        counts: dict[str, list[int]] = {}
        for unit in self.state.units.values():
            if (unit.company_id, unit.currency, unit.state) == (
                company_id,
                currency,
                UnitState.POOLED,
            ):
                assert unit.claimable_at is not None
                line = counts.setdefault(unit.license_type, [0, 0])
                claimable = allocation.grace_of(unit.claimable_at, now) is Grace.CLAIMABLE
                line[0 if claimable else 1] += 1
        return [PoolContent(code, c, g) for code, (c, g) in sorted(counts.items())]


class FakeUnits(_Table):
    async def add(
        self, office: Office, license_type: str, quantity: int, now: datetime, cause: Cause
    ) -> list[Unit]:
        added = [
            Unit(
                unit_id=uuid.uuid4(),
                company_id=office.company_id,
                office_id=office.office_id,
                currency=office.currency,
                license_type=license_type,
                state=UnitState.SPARE,
                assignee=None,
                returned_at=None,
                claimable_at=None,
                hold_id=None,
                held_from=None,
                created_at=now,
                updated_at=now,
            )
            for _ in range(quantity)
        ]
        self.state.units.update((u.unit_id, u) for u in added)
        for unit in added:
            self._record(unit, now, _Why(EventKind.CREATED, cause))
        return sorted(added, key=lambda u: u.unit_id)

    async def by_id(self, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID]) -> list[Unit]:
        return self._of(company_id, unit_ids)

    async def page(
        self,
        company_id: uuid.UUID,
        office_id: uuid.UUID | None,
        currency: str | None,
        license_type: str | None,
        state: UnitState | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Unit]:
        found = sorted(
            (
                u
                for u in self.state.units.values()
                if u.company_id == company_id
                and office_id in (None, u.office_id)
                and currency in (None, u.currency)
                and license_type in (None, u.license_type)
                and state in (None, u.state)
                and (after is None or (u.created_at, u.unit_id) > after)
            ),
            key=lambda u: (u.created_at, u.unit_id),
        )
        return found[:limit]

    async def office_has_live_units(self, company_id: uuid.UUID, office_id: uuid.UUID) -> bool:
        return any(
            u.company_id == company_id
            and u.office_id == office_id
            and u.state is not UnitState.TERMINATED
            for u in self.state.units.values()
        )

    async def reassign(
        self,
        company_id: uuid.UUID,
        reassignments: Sequence[tuple[uuid.UUID, Assignee]],
        now: datetime,
        cause: Cause,
    ) -> int:
        changed = 0
        why = _Why(EventKind.REASSIGNED, cause)
        for unit_id, assignee in reassignments:
            for unit in self._of(company_id, [unit_id]):
                if unit.state is UnitState.ASSIGNED:
                    self._set(unit, now, why, assignee=assignee)
                    changed += 1
        return changed

    async def return_to_pool(
        self,
        company_id: uuid.UUID,
        unit_ids: Sequence[uuid.UUID],
        now: datetime,
        claimable_at: datetime,
        cause: Cause,
    ) -> int:
        moving = [
            u
            for u in self._of(company_id, unit_ids)
            if u.state in (UnitState.ASSIGNED, UnitState.SPARE)
        ]
        for unit in moving:
            self._set(
                unit,
                now,
                _Why(EventKind.RETURNED, cause),
                state=UnitState.POOLED,
                assignee=None,
                returned_at=now,
                claimable_at=claimable_at,
            )
        return len(moving)

    async def return_to_spare(
        self, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID], now: datetime, cause: Cause
    ) -> int:
        moving = [u for u in self._of(company_id, unit_ids) if u.state is UnitState.ASSIGNED]
        for unit in moving:
            self._set(
                unit, now, _Why(EventKind.RETURNED, cause), state=UnitState.SPARE, assignee=None
            )
        return len(moving)

    def _office_units(self, office: Office, license_type: str, state: UnitState) -> list[Unit]:
        return sorted(
            (
                u
                for u in self.state.units.values()
                if (u.company_id, u.office_id, u.license_type, u.state)
                == (office.company_id, office.office_id, license_type, state)
            ),
            key=lambda u: u.unit_id,
        )

    async def mark_for_removal(
        self, office: Office, license_type: str, quantity: int, now: datetime, cause: Cause
    ) -> list[Unit]:
        spare = self._office_units(office, license_type, UnitState.SPARE)
        if len(spare) < quantity:
            return []
        why = _Why(EventKind.REMOVAL_SCHEDULED, cause)
        return [self._set(u, now, why, state=UnitState.REMOVAL_SCHEDULED) for u in spare[:quantity]]

    async def restore_from_removal(
        self, office: Office, license_type: str, quantity: int, now: datetime, cause: Cause
    ) -> list[Unit]:
        scheduled = self._office_units(office, license_type, UnitState.REMOVAL_SCHEDULED)
        why = _Why(EventKind.RESTORED, cause)
        return [self._set(u, now, why, state=UnitState.SPARE) for u in scheduled[:quantity]]

    async def terminate(
        self, company_id: uuid.UUID, unit_ids: Sequence[uuid.UUID], now: datetime, cause: Cause
    ) -> list[Unit]:
        ending = (UnitState.SPARE, UnitState.POOLED, UnitState.REMOVAL_SCHEDULED)
        why = _Why(EventKind.TERMINATED, cause)
        return [
            self._set(u, now, why, state=UnitState.TERMINATED, returned_at=None, claimable_at=None)
            for u in self._of(company_id, unit_ids)
            if u.state in ending
        ]

    def _spare_of(self, company_id: uuid.UUID, currency: str, types: Sequence[str]) -> list[Unit]:
        return sorted(
            (
                u
                for u in self.state.units.values()
                if (u.company_id, u.currency, u.state) == (company_id, currency, UnitState.SPARE)
                and u.license_type in types
            ),
            key=lambda u: (u.created_at, u.unit_id),
        )

    async def spare_of_currency(
        self, company_id: uuid.UUID, currency: str, license_types: Sequence[str]
    ) -> list[Unit]:
        return self._spare_of(company_id, currency, license_types)

    async def move_into_pool(
        self,
        company_id: uuid.UUID,
        currency: str,
        license_types: Sequence[str],
        claimable_at: datetime,
        cause: Cause,
    ) -> list[Unit]:
        why = _Why(EventKind.POOLED, cause)
        for unit in list(self.state.units.values()):
            if (
                (unit.company_id, unit.currency) == (company_id, currency)
                and unit.state is UnitState.HELD
                and unit.held_from is UnitState.SPARE
                and unit.license_type in license_types
            ):
                changed = self._set(
                    unit,
                    held_from=UnitState.POOLED,
                    returned_at=claimable_at,
                    claimable_at=claimable_at,
                )
                self._record(changed, claimable_at, why)
        return [
            self._set(
                u,
                claimable_at,
                why,
                state=UnitState.POOLED,
                returned_at=claimable_at,
                claimable_at=claimable_at,
            )
            for u in self._spare_of(company_id, currency, license_types)
        ]

    async def counts(self, company_id: uuid.UUID, currency: str | None) -> list[UnitCount]:
        groups: dict[tuple[str, uuid.UUID, str, UnitState, UnitState | None], int] = {}
        for u in self.state.units.values():
            if u.company_id != company_id or u.state is UnitState.TERMINATED:
                continue
            if currency is not None and u.currency != currency:
                continue
            key = (u.currency, u.office_id, u.license_type, u.state, u.held_from)
            groups[key] = groups.get(key, 0) + 1
        return _counts(groups)

    async def availability(
        self, office: Office, license_types: Sequence[str], now: datetime
    ) -> list[Availability]:
        free = [
            u
            for u in self.state.units.values()
            if (u.company_id, u.currency) == (office.company_id, office.currency)
            and u.state in FREE
        ]
        scheduled = self._office_scheduled(office)
        types = set(license_types) or {u.license_type for u in free} | set(scheduled)
        result = []
        for code in sorted(types):
            offered = {
                rule.source: sum(allocation.offers(rule, u, office, code, now) for u in free)
                for rule in ALLOCATION_RULES
            }
            result.append(
                Availability(
                    code,
                    offered[Source.OWN_SPARE],
                    offered[Source.OWN_RETURN_IN_GRACE],
                    offered[Source.POOL],
                    scheduled.get(code, 0),
                )
            )
        return result

    def _office_scheduled(self, office: Office) -> dict[str, int]:
        scheduled: dict[str, int] = {}
        for u in self.state.units.values():
            if u.office_id == office.office_id and u.state is UnitState.REMOVAL_SCHEDULED:
                scheduled[u.license_type] = scheduled.get(u.license_type, 0) + 1
        return scheduled


class FakeAllocations(_Table):
    def __init__(self, state: PoolState, clock: FakeClock) -> None:
        super().__init__(state)
        self._clock = clock
        self._requests = InMemoryRequestLog(state.requests)

    async def open(
        self,
        keys: Sequence[tuple[uuid.UUID, str]],
        office_ids: Sequence[uuid.UUID],
        requests: Sequence[IdempotencyKey],
    ) -> Opened:
        companies = {company_id for company_id, _ in keys}
        offices = {
            o.office_id: o
            for o in self.state.offices.values()
            if o.company_id in companies and o.office_id in office_ids
        }
        pools = {key: Pool(*key, self.state.pools.get(key)) for key in keys}
        stored = await self._requests.lookup(requests)
        return Opened(self._clock.now(), pools, offices, stored)

    async def candidates(
        self, queries: Sequence[CandidateQuery], now: datetime
    ) -> list[list[tuple[uuid.UUID, Source]]]:
        return [self._candidates(q, now) for q in queries]

    def _candidates(self, query: CandidateQuery, now: datetime) -> list[tuple[uuid.UUID, Source]]:
        found: list[tuple[uuid.UUID, Source]] = []
        for rule in ALLOCATION_RULES:
            if rule.source not in query.sources:
                continue
            offered = sorted(
                (
                    u
                    for u in self.state.units.values()
                    if allocation.offers(rule, u, query.office, query.license_type, now)
                ),
                key=lambda u: allocation.order_of(rule, u),
            )
            found.extend((u.unit_id, rule.source) for u in offered[: query.limit])
        return found[: query.limit]

    async def hand_out(self, handouts: Sequence[Handout], now: datetime) -> dict[uuid.UUID, Unit]:
        taken: dict[uuid.UUID, Unit] = {}
        for h in handouts:
            unit = self.state.units.get(h.unit_id)
            if unit is None or unit.company_id != h.company_id or unit.state not in FREE:
                continue
            cause = Cause(h.request_id)
            if h.hold_id is None:
                why = _Why(EventKind.ACQUIRED, cause, source=h.source, receipt_id=h.receipt_id)
                taken[h.unit_id] = self._set(
                    unit,
                    now,
                    why,
                    state=UnitState.ASSIGNED,
                    office_id=h.office_id,
                    assignee=h.assignee,
                    returned_at=None,
                    claimable_at=None,
                )
            else:
                why = _Why(
                    EventKind.RESERVED,
                    cause,
                    for_office_id=h.office_id,
                    source=h.source,
                    receipt_id=h.receipt_id,
                )
                taken[h.unit_id] = self._set(
                    unit,
                    now,
                    why,
                    state=UnitState.HELD,
                    held_from=unit.state,
                    hold_id=h.hold_id,
                    assignee=h.assignee,
                )
        return taken

    async def bystanders(self, office: Office, license_type: str, now: datetime) -> Bystanders:
        spare = in_grace = held = other_currency = 0
        earliest: datetime | None = None
        for u in self.state.units.values():
            if u.company_id != office.company_id or u.license_type != license_type:
                continue
            if u.currency != office.currency:
                other_currency += u.state in FREE
                continue
            if u.state is UnitState.HELD:
                held += 1
            elif u.office_id == office.office_id:
                continue
            elif u.state is UnitState.SPARE:
                spare += 1
            elif u.state is UnitState.POOLED:
                assert u.claimable_at is not None
                if allocation.grace_of(u.claimable_at, now) is Grace.IN_GRACE:
                    in_grace += 1
                    earliest = min(earliest or u.claimable_at, u.claimable_at)
        return Bystanders(spare, in_grace, earliest, held, other_currency)

    async def store(
        self,
        now: datetime,
        holds: Sequence[Hold],
        receipts: Sequence[Receipt],
        responses: Sequence[tuple[IdempotencyKey, bytes]],
    ) -> None:
        for hold in holds:
            assert hold.hold_id not in self.state.holds, "primary key"
            self.state.holds[hold.hold_id] = hold
        for receipt in receipts:
            assert receipt.receipt_id is not None
            self.state.receipts[receipt.receipt_id] = receipt
        await self._requests.record(responses)


class FakeHolds(_Table):
    async def get(self, company_id: uuid.UUID, hold_id: uuid.UUID) -> Hold | None:
        found = await self.get_many(company_id, [hold_id])
        return found[0] if found else None

    async def get_many(self, company_id: uuid.UUID, hold_ids: Sequence[uuid.UUID]) -> list[Hold]:
        found = (self.state.holds.get(h) for h in hold_ids)
        return [h for h in found if h is not None and h.company_id == company_id]

    async def resolve(
        self,
        company_id: uuid.UUID,
        hold_ids: Sequence[uuid.UUID],
        state: HoldState,
        now: datetime,
    ) -> list[Hold]:
        resolved = []
        for hold in await self.get_many(company_id, hold_ids):
            if hold.state is HoldState.PENDING:
                self.state.holds[hold.hold_id] = replace(hold, state=state, resolved_at=now)
                resolved.append(self.state.holds[hold.hold_id])
        return resolved

    def _held(self, hold_id: uuid.UUID) -> list[Unit]:
        return sorted(
            (u for u in self.state.units.values() if u.hold_id == hold_id),
            key=lambda u: u.unit_id,
        )

    async def restore_units(
        self,
        company_id: uuid.UUID,
        hold_ids: Sequence[uuid.UUID],
        resolution: HoldState,
        now: datetime,
        cause: Cause,
    ) -> None:
        kind = EventKind.EXPIRED if resolution is HoldState.EXPIRED else EventKind.RELEASED
        for hold_id in hold_ids:
            for unit in self._held(hold_id):
                if unit.company_id != company_id:
                    continue
                why = _Why(kind, cause, hold_id=hold_id)
                self._set(unit, now, why, state=unit.held_from, held_from=None, hold_id=None)

    def _committed(self, hold: Hold, cause: Cause) -> _Why:
        return _Why(EventKind.COMMITTED, cause, hold_id=hold.hold_id, receipt_id=hold.receipt_id)

    async def commit_assigned(
        self, hold: Hold, assignees: Sequence[Assignee], now: datetime, cause: Cause
    ) -> list[Unit]:
        return [
            self._set(
                unit,
                now,
                self._committed(hold, cause),
                state=UnitState.ASSIGNED,
                hold_id=None,
                held_from=None,
                office_id=hold.office_id,
                assignee=assignee,
                returned_at=None,
                claimable_at=None,
            )
            for unit, assignee in zip(self._held(hold.hold_id), assignees, strict=True)
        ]

    async def commit_spare(self, hold: Hold, now: datetime, cause: Cause) -> list[Unit]:
        return [
            self._set(
                unit,
                now,
                self._committed(hold, cause),
                state=UnitState.SPARE,
                hold_id=None,
                held_from=None,
                office_id=hold.office_id,
                returned_at=None,
                claimable_at=None,
            )
            for unit in self._held(hold.hold_id)
        ]

    async def due(self, now: datetime, limit: int) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
        due = sorted(
            (
                h
                for h in self.state.holds.values()
                if h.state is HoldState.PENDING and h.expires_at <= now
            ),
            key=lambda h: h.expires_at,
        )
        return [(h.hold_id, h.company_id, h.currency) for h in due[:limit]]


class FakeReceipts(_Table):
    async def get(self, company_id: uuid.UUID, receipt_id: uuid.UUID) -> Receipt | None:
        receipt = self.state.receipts.get(receipt_id)
        return receipt if receipt is not None and receipt.company_id == company_id else None


class FakeHistory(_Table):
    async def page(self, query: EventQuery) -> list[UnitEvent]:
        found = sorted(
            (
                e
                for e in self.state.unit_events
                if e.company_id == query.company_id
                and query.unit_id in (None, e.unit_id)
                and query.office_id in (None, e.office_id, e.for_office_id)
                and (query.start is None or e.occurred_at >= query.start)
                and (query.end is None or e.occurred_at < query.end)
                and (query.after is None or (e.occurred_at, e.event_id) > query.after)
            ),
            key=lambda e: (e.occurred_at, e.event_id),
        )
        return found[: query.page_size + 1]

    async def counts_as_of(
        self, company_id: uuid.UUID, currency: str | None, as_of: datetime
    ) -> list[UnitCount]:
        last: dict[uuid.UUID, UnitEvent] = {}
        for event in self.state.unit_events:  # in id order: the last one wins
            if event.company_id == company_id and event.occurred_at <= as_of:
                last[event.unit_id] = event
        groups: dict[tuple[str, uuid.UUID, str, UnitState, UnitState | None], int] = {}
        for event in last.values():
            unit = self.state.units[event.unit_id]
            if event.state is UnitState.TERMINATED or currency not in (None, unit.currency):
                continue
            key = (unit.currency, event.office_id, unit.license_type, event.state, event.held_from)
            groups[key] = groups.get(key, 0) + 1
        return _counts(groups)

    async def horizon(self, company_id: uuid.UUID) -> datetime | None:
        return self.state.horizons.get(company_id)

    async def purge(self, before: datetime, limit: int) -> int:
        last_before: dict[uuid.UUID, int] = {}
        for event in self.state.unit_events:
            if event.occurred_at < before:
                last_before[event.unit_id] = event.event_id
        gone = [
            e
            for e in self.state.unit_events
            if e.occurred_at < before
            and (e.state is UnitState.TERMINATED or last_before[e.unit_id] != e.event_id)
        ][:limit]
        ids = {e.event_id for e in gone}
        self.state.unit_events = [e for e in self.state.unit_events if e.event_id not in ids]
        return len(gone)


def _counts(
    groups: dict[tuple[str, uuid.UUID, str, UnitState, UnitState | None], int],
) -> list[UnitCount]:
    """Counts in the order the statements give them: by currency, office, type."""
    return [
        UnitCount(office_id, cur, code, state, held_from, n)
        for (cur, office_id, code, state, held_from), n in sorted(
            groups.items(), key=lambda item: item[0][:3]
        )
    ]


class FakeHousekeeping(_Table):
    async def refresh_statistics(self) -> None:
        self.state.analyzed += 1

    async def purge_request_ids(self, retention_hours: int) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class FakeTx:
    """`services.pool.unit_of_work.Tx`, in memory."""

    locks: FakeLocks
    offices: FakeOffices
    pools: FakePools
    units: FakeUnits
    allocations: FakeAllocations
    holds: FakeHolds
    receipts: FakeReceipts
    housekeeping: FakeHousekeeping
    requests: InMemoryRequestLog
    history: FakeHistory
    events: InMemoryOutbox


class InMemoryPoolUnitOfWork(InMemoryUnitOfWork[PoolState, FakeTx]):
    """The pool's unit of work over a `PoolState`, at the instants of `clock`."""

    def __init__(self, clock: FakeClock | None = None, state: PoolState | None = None) -> None:
        self.clock = clock or FakeClock(datetime(2026, 3, 1, 12, tzinfo=UTC))

        def bind(tables: PoolState) -> FakeTx:
            return FakeTx(
                locks=FakeLocks(tables, self.clock),
                offices=FakeOffices(tables),
                pools=FakePools(tables),
                units=FakeUnits(tables),
                allocations=FakeAllocations(tables, self.clock),
                holds=FakeHolds(tables),
                receipts=FakeReceipts(tables),
                housekeeping=FakeHousekeeping(tables),
                requests=InMemoryRequestLog(tables.requests),
                history=FakeHistory(tables),
                events=InMemoryOutbox(tables.events),
            )

        super().__init__(state or PoolState(), bind)

    @asynccontextmanager
    async def locked(self, keys: Sequence[tuple[uuid.UUID, str]]) -> AsyncIterator[FakeTx]:
        async with self.transaction() as tx:
            await tx.locks.take_all(keys)
            yield tx

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[FakeTx]:
        async with self.reading() as tx:
            yield tx

    async def live_counts(
        self, company_id: uuid.UUID, currency: str | None, currencies: Collection[str]
    ) -> tuple[list[UnitCount], datetime]:
        """One task at a time: no writer is ever in flight beside a read."""
        async with self.reading() as tx:
            return await tx.units.counts(company_id, currency), self.clock.now()
