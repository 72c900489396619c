"""What the billing service keeps (plans, quotes, purchases, invoices) and what it learns
from the pool (availability, holds, snapshots). See docs/product.md, "Companies, offices
and plans", "Checkout and purchases" and "Invoices"."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.billing.domain.purchase import Step


class PlanKind(enum.StrEnum):
    """Only bundle plans take part in pools."""

    BUNDLE = "BUNDLE"
    LEGACY = "LEGACY"


class PurchaseState(enum.StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Plan:
    """An office's plan: a price book (minor units per license type per cycle) in one
    currency, a monthly cycle anchored at `start_at`."""

    plan_id: uuid.UUID
    company_id: uuid.UUID
    office_id: uuid.UUID
    kind: PlanKind
    currency: str
    prices: Mapping[str, int]
    contracted: bool
    start_at: datetime
    active: bool
    primary: bool
    created_at: datetime
    updated_at: datetime
    display_name: str = ""  # for people
    credit_allowance: int = 0  # included usage credits per credit period, minor units

    def price_of(self, license_type: str) -> int | None:
        return self.prices.get(license_type)


@dataclass(frozen=True, slots=True)
class Cycle:
    """One monthly billing cycle: [start, end)."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())


@dataclass(frozen=True, slots=True)
class Split:
    """Where the licenses of a checkout come from, in that order."""

    restored: int  # from the office's scheduled removals, free
    from_pool: int  # from the company's pool, free
    new: int  # created, charged

    @property
    def total(self) -> int:
        return self.restored + self.from_pool + self.new


@dataclass(frozen=True, slots=True)
class Quote:
    quote_id: uuid.UUID | None  # None: a preview that holds nothing
    company_id: uuid.UUID
    office_id: uuid.UUID
    license_type: str
    quantity: int
    split: Split
    plan_id: uuid.UUID
    currency: str
    unit_price: int
    amount: int
    cycle: Cycle
    quoted_at: datetime
    hold_id: uuid.UUID | None = None
    expires_at: datetime | None = None
    # Of split.from_pool, the office's own returns still in grace (the rest were
    # returned by other offices). Told in the quote's answer, not kept with it.
    own_returns: int = 0


@dataclass(frozen=True, slots=True)
class Purchase:
    purchase_id: uuid.UUID
    company_id: uuid.UUID
    request_id: str
    office_id: uuid.UUID
    license_type: str
    quantity: int
    state: PurchaseState
    plan_id: uuid.UUID
    currency: str
    unit_price: int
    cycle: Cycle
    purchased_at: datetime
    attempt: int
    step: Step
    quote_id: uuid.UUID | None = None
    split: Split | None = None
    amount: int = 0
    hold_id: uuid.UUID | None = None
    reserve_quantity: int | None = None  # what step RESERVING asks the pool for
    # The units the purchase has so far: restored (known from RESERVING on), then from the
    # pool (from ADDING on), then new (once COMPLETED).
    unit_ids: tuple[uuid.UUID, ...] = ()
    restored: int | None = None  # how many were restored, once known
    resolved_at: datetime | None = None
    failure_kind: str | None = None
    failure_reason: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True, slots=True)
class Availability:
    """What an office could take now for one license type, as the pool judges it (the
    grace rule is the pool's)."""

    own_spare: int = 0
    own_returns_in_grace: int = 0
    pool_claimable: int = 0
    removal_scheduled: int = 0

    @property
    def from_pool_sources(self) -> int:
        """What a Reserve from the office's returns in grace and the pool would find."""
        return self.own_returns_in_grace + self.pool_claimable


class HoldState(enum.StrEnum):
    PENDING = "PENDING"
    COMMITTED = "COMMITTED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class Held:
    """Pool units held for an office."""

    hold_id: uuid.UUID
    unit_ids: tuple[str, ...]
    expires_at: datetime
    own_returns: int = 0  # of the units, the office's own returns still in grace


@dataclass(frozen=True, slots=True)
class OfficeCounts:
    """Units of one type one office pays for, from a pool snapshot."""

    office_id: uuid.UUID
    currency: str
    license_type: str
    assigned: int = 0
    spare: int = 0
    held: int = 0
    removal_scheduled: int = 0


@dataclass(frozen=True, slots=True)
class PoolCounts:
    """Units of one type resting in (or held from) a currency's pool."""

    currency: str
    license_type: str
    pooled: int = 0
    held: int = 0


@dataclass(frozen=True, slots=True)
class PoolEntry:
    """Spare units of one office and type that enabling a pool would move into it."""

    office_id: uuid.UUID
    license_type: str
    quantity: int


@dataclass(frozen=True, slots=True)
class PoolPreview:
    """What enabling a currency's pool would do, as the pool says, changing nothing: the
    units that would enter it and the offices taking part, or why it would be refused."""

    entries: tuple[PoolEntry, ...] = ()
    office_ids: tuple[uuid.UUID, ...] = ()
    refusal_reason: str = ""
    refusal_message: str = ""


@dataclass(frozen=True, slots=True)
class ScheduledUnit:
    """A unit an office scheduled for removal, and when it did (the pool's last change
    of a REMOVAL_SCHEDULED unit is that move)."""

    unit_id: str
    office_id: uuid.UUID
    scheduled_at: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: datetime
    offices: tuple[OfficeCounts, ...]
    pools: tuple[PoolCounts, ...]
    live_units: int


class LineKind(enum.StrEnum):
    OFFICE_UNITS = "OFFICE_UNITS"
    POOLED_UNITS = "POOLED_UNITS"


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    kind: LineKind
    office_id: uuid.UUID | None
    plan_id: uuid.UUID | None
    currency: str
    license_type: str
    assigned: int
    spare: int
    removal_scheduled: int
    held: int
    pooled: int
    unit_price: int
    unpriced: bool = False  # no price applies: billed at 0 and flagged, never silently

    @property
    def units(self) -> int:
        return self.assigned + self.spare + self.removal_scheduled + self.held + self.pooled

    @property
    def amount(self) -> int:
        return self.units * self.unit_price


@dataclass(frozen=True, slots=True)
class PurchaseCharge:
    purchase_id: uuid.UUID
    office_id: uuid.UUID
    plan_id: uuid.UUID
    license_type: str
    currency: str
    new_units: int
    amount: int
    purchased_at: datetime
    # The period of the plan cycle it was bought in: earlier than the invoice's when the
    # charge completed after its own period's invoice was made (carried to the next).
    period: str
    unit_price: int = 0  # the purchase's price per unit and cycle
    # Billed in advance: a charge of the period after the invoice's, whose new units are
    # on the invoice's lines already (each billed a full cycle, the one they were bought
    # in). `adjustment` (<= 0) credits that cycle's part before the purchase, so that line
    # and charge together are the prorated amount; `amount` includes it.
    billed_in_advance: bool = False
    adjustment: int = 0

    @property
    def prorated(self) -> int:
        """The purchase's prorated charge, before any adjustment."""
        return self.amount - self.adjustment


@dataclass(frozen=True, slots=True)
class CreditOverage:
    """An office's credit overage of one credit period, billed at face value (credits
    are money in the office's currency) on the office's paying plan."""

    office_id: uuid.UUID
    plan_id: uuid.UUID | None
    currency: str
    period_start: datetime
    period_end: datetime
    amount: int


@dataclass(frozen=True, slots=True)
class PeriodOverage:
    """What the credits service says an office owes for one credit period."""

    office_id: uuid.UUID
    currency: str
    period_start: datetime
    period_end: datetime
    amount: int


@dataclass(frozen=True, slots=True)
class Reconciliation:
    live_units: int
    billed_units: int
    balanced: bool
    unpriced_units: int = 0


@dataclass(frozen=True, slots=True)
class Invoice:
    invoice_id: uuid.UUID
    company_id: uuid.UUID
    period: str
    snapshot_at: datetime
    lines: tuple[InvoiceLine, ...]
    charges: tuple[PurchaseCharge, ...]
    reconciliation: Reconciliation
    created_at: datetime
    terminated_units: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    overages: tuple[CreditOverage, ...] = ()
    overage_included: bool = False  # the credits service was asked

    @property
    def unpriced_units(self) -> int:
        return self.reconciliation.unpriced_units
