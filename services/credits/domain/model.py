"""What the credits service keeps (docs/product.md, "Credits"): office credit accounts,
pooling switches, grants, usage records, and the ledger's accounts and entries.

Amounts are integers in the minor unit of their currency (USD cents, JPY yen).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime


class UsageKind(enum.StrEnum):
    """What a usage is for. AI_AGENT is special: see `drawing`."""

    CALLING = "CALLING"
    MESSAGING = "MESSAGING"
    FAX = "FAX"
    AI_AGENT = "AI_AGENT"


class OveragePolicy(enum.StrEnum):
    """What an office does when its credits do not cover a usage."""

    ALLOW = "ALLOW"  # the rest is overage of the office, billable
    REJECT = "REJECT"  # the usage is refused: INSUFFICIENT_CREDITS


class GrantTarget(enum.StrEnum):
    """Where granted (purchased) credits go."""

    COMPANY_POOL = "COMPANY_POOL"
    OFFICE_BALANCE = "OFFICE_BALANCE"
    AI_AGENT_CREDITS = "AI_AGENT_CREDITS"


class AccountKind(enum.StrEnum):
    """The kinds of ledger account. Each (company, currency) has its own accounts."""

    ISSUED = "ISSUED"  # where grants and allowances come from; never above zero
    ALLOWANCE = "ALLOWANCE"  # an office's included allowance of one period
    OFFICE_BALANCE = "OFFICE_BALANCE"  # an office's own credits
    COMPANY_POOL = "COMPANY_POOL"  # the shared company credits of the currency
    AI_AGENT_CREDITS = "AI_AGENT_CREDITS"  # the company's AI agent credits (primary office)
    CONSUMED = "CONSUMED"  # what an office consumed
    OVERAGE = "OVERAGE"  # what an office owes for uncovered usage; never above zero


class EntryKind(enum.StrEnum):
    """Why a ledger entry was made."""

    ALLOWANCE = "ALLOWANCE"
    GRANT = "GRANT"
    USAGE = "USAGE"
    OVERAGE = "OVERAGE"
    TRANSFER = "TRANSFER"


# Accounts of these kinds hold credits and can never go below zero; the others are
# counter-accounts of the double entry.
NON_NEGATIVE = frozenset(
    {
        AccountKind.ALLOWANCE,
        AccountKind.OFFICE_BALANCE,
        AccountKind.COMPANY_POOL,
        AccountKind.AI_AGENT_CREDITS,
        AccountKind.CONSUMED,
    }
)
NON_POSITIVE = frozenset({AccountKind.ISSUED, AccountKind.OVERAGE})
OFFICE_KINDS = frozenset(
    {
        AccountKind.ALLOWANCE,
        AccountKind.OFFICE_BALANCE,
        AccountKind.CONSUMED,
        AccountKind.OVERAGE,
    }
)

# Calendar months, when an account names no anchor of its own.
DEFAULT_PERIOD_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
MAX_AMOUNT = 1_000_000_000_000  # per usage, grant or allowance, in minor units


@dataclass(frozen=True, slots=True)
class OfficeAccount:
    """The facts the credits service keeps about an office."""

    company_id: uuid.UUID
    office_id: uuid.UUID
    currency: str
    primary: bool
    allowance: int  # included allowance per billing period
    period_anchor: datetime  # the plan's start: periods are monthly from here
    overage_policy: OveragePolicy
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Pooling:
    """Unified credit pooling of one currency of a company."""

    company_id: uuid.UUID
    currency: str
    enabled: bool
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class AccountKey:
    """A ledger account within one (company, currency)."""

    kind: AccountKind
    office_id: uuid.UUID | None = None
    period_start: datetime | None = None

    def __post_init__(self) -> None:
        assert (self.kind in OFFICE_KINDS) == (self.office_id is not None), self
        assert (self.kind is AccountKind.ALLOWANCE) == (self.period_start is not None), self

    @property
    def code(self) -> str:
        """A unique name of the account within its (company, currency)."""
        parts = [self.kind.value]
        if self.office_id is not None:
            parts.append(str(self.office_id))
        if self.period_start is not None:
            parts.append(self.period_start.astimezone(UTC).isoformat())
        return "/".join(parts)


def issued() -> AccountKey:
    return AccountKey(AccountKind.ISSUED)


def company_pool() -> AccountKey:
    return AccountKey(AccountKind.COMPANY_POOL)


def ai_agent_credits() -> AccountKey:
    return AccountKey(AccountKind.AI_AGENT_CREDITS)


def allowance_of(office_id: uuid.UUID, period_start: datetime) -> AccountKey:
    return AccountKey(AccountKind.ALLOWANCE, office_id, period_start)


def balance_of(office_id: uuid.UUID) -> AccountKey:
    return AccountKey(AccountKind.OFFICE_BALANCE, office_id)


def consumed_by(office_id: uuid.UUID) -> AccountKey:
    return AccountKey(AccountKind.CONSUMED, office_id)


def overage_of(office_id: uuid.UUID) -> AccountKey:
    return AccountKey(AccountKind.OVERAGE, office_id)


@dataclass(frozen=True, slots=True)
class Posting:
    """One double entry: `amount` leaves `debit` and enters `credit` (same currency)."""

    kind: EntryKind
    debit: AccountKey
    credit: AccountKey
    amount: int
    usage_id: uuid.UUID | None = None
    grant_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Split:
    """How a usage was charged; the parts add up to its amount."""

    allowance: int = 0
    office_balance: int = 0
    company_pool: int = 0
    ai_agent_credits: int = 0
    overage: int = 0

    @property
    def total(self) -> int:
        return (
            self.allowance
            + self.office_balance
            + self.company_pool
            + self.ai_agent_credits
            + self.overage
        )

    def __add__(self, other: Split) -> Split:
        return Split(
            self.allowance + other.allowance,
            self.office_balance + other.office_balance,
            self.company_pool + other.company_pool,
            self.ai_agent_credits + other.ai_agent_credits,
            self.overage + other.overage,
        )


@dataclass(frozen=True, slots=True)
class Period:
    """One billing period: [start, end)."""

    start: datetime
    end: datetime

    def __contains__(self, instant: object) -> bool:
        return isinstance(instant, datetime) and self.start <= instant < self.end


@dataclass(frozen=True, slots=True)
class UsageRecord:
    usage_id: uuid.UUID
    request_id: str
    company_id: uuid.UUID
    office_id: uuid.UUID
    kind: UsageKind
    currency: str
    amount: int
    occurred_at: datetime
    period: Period
    split: Split
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Grant:
    grant_id: uuid.UUID
    company_id: uuid.UUID
    target: GrantTarget
    office_id: uuid.UUID | None
    currency: str
    amount: int
    note: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerAccount:
    account_id: int
    currency: str
    key: AccountKey
    balance: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: int
    kind: EntryKind
    currency: str
    debit: LedgerAccount
    credit: LedgerAccount
    amount: int
    usage_id: uuid.UUID | None
    grant_id: uuid.UUID | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Transfer:
    office_id: uuid.UUID
    from_kind: AccountKind
    to_kind: AccountKind
    currency: str
    amount: int


@dataclass(frozen=True, slots=True)
class UsageTotal:
    office_id: uuid.UUID | None  # None: a company total
    currency: str
    count: int
    amount: int
    split: Split


@dataclass(frozen=True, slots=True)
class PeriodOverage:
    """What one office's credits did not cover in one period (billing bills it)."""

    office_id: uuid.UUID
    currency: str
    period: Period
    overage: int
    count: int  # usage records with overage


@dataclass(frozen=True, slots=True)
class OfficeBalance:
    office_id: uuid.UUID
    currency: str
    primary: bool
    period: Period
    allowance: int
    allowance_remaining: int
    balance: int
    ai_agent_credits: int
    consumed: int
    overage: int


@dataclass(frozen=True, slots=True)
class PoolBalance:
    currency: str
    pooling_enabled: bool
    balance: int


@dataclass(frozen=True, slots=True)
class Balances:
    taken_at: datetime
    pools: tuple[PoolBalance, ...]
    offices: tuple[OfficeBalance, ...]


@dataclass(frozen=True, slots=True)
class Violation:
    account: LedgerAccount
    entries_sum: int
    rule: str


@dataclass(frozen=True, slots=True)
class LedgerCheck:
    checked_at: datetime
    accounts: int
    entries: int
    violations: tuple[Violation, ...]

    @property
    def consistent(self) -> bool:
        return not self.violations


@dataclass(frozen=True, slots=True)
class OfficeCap:
    """The most an office may draw from the shared company balance per billing period,
    and what it drew in the current one (`caps`)."""

    company_id: uuid.UUID
    office_id: uuid.UUID
    currency: str
    cap: int
    period: Period
    drawn: int
    updated_at: datetime


class ThresholdKind(enum.StrEnum):
    """How a threshold's value is read (`alerts`)."""

    BALANCE = "BALANCE"  # an absolute balance, in minor units
    PERCENT = "PERCENT"  # a percent (1 to 99) of the shared balance's top-up level


@dataclass(frozen=True, slots=True, order=True)
class Threshold:
    """A level of the shared company balance of one currency."""

    kind: ThresholdKind
    value: int


@dataclass(frozen=True, slots=True)
class CreditAlert:
    """A threshold crossed by a usage: one per threshold per alert period."""

    alert_id: uuid.UUID
    company_id: uuid.UUID
    currency: str
    threshold: Threshold
    period: Period
    level: int  # the threshold's level in minor units when it was crossed
    balance: int  # the shared balance right after the usage
    usage_id: uuid.UUID
    office_id: uuid.UUID
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UsageLimits:
    """What limits and watches a batch of usages of one (company, currency): the caps of
    its offices, the thresholds with no alert in the current alert period, and the top-up
    level percent thresholds are taken of."""

    caps: dict[uuid.UUID, int]
    pending: tuple[Threshold, ...] = ()
    top_up: int = 0
