"""The double-entry credit ledger (docs/product.md, "Credits").

Every movement of credits is one posting: an amount above zero leaves a debit account
and enters a credit account of the same (company, currency). An account's balance is
its credits minus its debits, so the balances of a currency always sum to zero, and
every balance equals the sum of its entries. Accounts that hold credits (allowances,
office and company balances, AI agent credits, consumption) never go below zero; the
counter-accounts (credits issued, overage owed) never go above zero.

    grant             ISSUED            -> COMPANY_POOL | OFFICE_BALANCE | AI_AGENT_CREDITS
    period allowance  ISSUED            -> ALLOWANCE(office, period)
    usage             source            -> CONSUMED(office)        (per source drawn)
    overage           OVERAGE(office)   -> CONSUMED(office)
    pooling on        OFFICE_BALANCE(o) -> COMPANY_POOL

`Ledger` applies postings to the balances one transaction loaded and checks these
rules before anything reaches the database, which enforces them again (CHECK
constraints), whatever the concurrency.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

from services.credits.domain.drawing import Usage, split_usage
from services.credits.domain.model import (
    NON_NEGATIVE,
    NON_POSITIVE,
    AccountKey,
    AccountKind,
    EntryKind,
    GrantTarget,
    LedgerAccount,
    Posting,
    Split,
    Transfer,
    Violation,
    ai_agent_credits,
    allowance_of,
    balance_of,
    company_pool,
    consumed_by,
    issued,
    overage_of,
)


class LedgerRuleBroken(Exception):
    """A posting would break a ledger rule: a bug, never the caller's fault."""


def sign_ok(kind: AccountKind, balance: int) -> bool:
    """Whether an account of this kind may hold this balance."""
    if kind in NON_NEGATIVE:
        return balance >= 0
    assert kind in NON_POSITIVE
    return balance <= 0


class Ledger:
    """The balances of the accounts one transaction touches, and the postings it adds."""

    def __init__(self, balances: Mapping[AccountKey, int]) -> None:
        self._balances = dict(balances)
        self._postings: list[Posting] = []

    def balance(self, key: AccountKey) -> int:
        """The balance of a loaded account (KeyError: the caller did not load it)."""
        return self._balances[key]

    def post(
        self,
        kind: EntryKind,
        debit: AccountKey,
        credit: AccountKey,
        amount: int,
        usage_id: uuid.UUID | None = None,
        grant_id: uuid.UUID | None = None,
    ) -> None:
        if amount <= 0:
            raise LedgerRuleBroken(f"posting of {amount}: amounts are above zero")
        if debit == credit:
            raise LedgerRuleBroken(f"posting from {debit.code} to itself")
        after_debit = self._balances[debit] - amount
        after_credit = self._balances[credit] + amount
        if not sign_ok(debit.kind, after_debit) or not sign_ok(credit.kind, after_credit):
            raise LedgerRuleBroken(f"posting {debit.code} -> {credit.code} of {amount}")
        self._balances[debit] = after_debit
        self._balances[credit] = after_credit
        self._postings.append(Posting(kind, debit, credit, amount, usage_id, grant_id))

    @property
    def postings(self) -> tuple[Posting, ...]:
        return tuple(self._postings)

    def deltas(self) -> dict[AccountKey, int]:
        """How much each account's balance changed (only accounts that changed)."""
        changes: dict[AccountKey, int] = {}
        for p in self._postings:
            changes[p.debit] = changes.get(p.debit, 0) - p.amount
            changes[p.credit] = changes.get(p.credit, 0) + p.amount
        return {key: delta for key, delta in changes.items() if delta}


def open_period(ledger: Ledger, office_id: uuid.UUID, start: datetime, allowance: int) -> None:
    """Issues an office's included allowance for a period (once, when it opens)."""
    if allowance > 0:
        ledger.post(EntryKind.ALLOWANCE, issued(), allowance_of(office_id, start), allowance)


def grant_account(target: GrantTarget, office_id: uuid.UUID | None) -> AccountKey:
    """The account granted credits go to."""
    if target is GrantTarget.COMPANY_POOL:
        return company_pool()
    if target is GrantTarget.AI_AGENT_CREDITS:
        return ai_agent_credits()
    assert office_id is not None
    return balance_of(office_id)


def grant(ledger: Ledger, target: AccountKey, amount: int, grant_id: uuid.UUID) -> None:
    ledger.post(EntryKind.GRANT, issued(), target, amount, grant_id=grant_id)


def charge(
    ledger: Ledger,
    usage: Usage,
    usage_id: uuid.UUID,
    period_start: datetime,
    pooling_enabled: bool,
    ai_credits: AccountKey | None,
    opening_allowance: int | None = None,
    pool_cap_left: int | None = None,
) -> Split:
    """Charges one usage in draw order (see `drawing`); returns its split.

    `ai_credits` is the AI agent credits account the usage may draw from, or None.
    `opening_allowance` is set when the usage's period has not been opened yet: the
    period's allowance is issued first, unless the usage is refused (then nothing is
    posted at all). `pool_cap_left` is what the office's cap still lets it draw from the
    shared balance (None: no cap)."""
    office = usage.office_id
    sources = {
        AccountKind.ALLOWANCE: allowance_of(office, period_start),
        AccountKind.OFFICE_BALANCE: balance_of(office),
        AccountKind.COMPANY_POOL: company_pool(),
    }
    if ai_credits is not None:
        sources[AccountKind.AI_AGENT_CREDITS] = ai_credits
    available = {kind: ledger.balance(key) for kind, key in sources.items()}
    if opening_allowance is not None:
        available[AccountKind.ALLOWANCE] += opening_allowance
    split = split_usage(usage, available, pooling_enabled, ai_credits is not None, pool_cap_left)
    if opening_allowance is not None:
        open_period(ledger, office, period_start, opening_allowance)
    consumed = consumed_by(office)
    for kind, amount in (
        (AccountKind.ALLOWANCE, split.allowance),
        (AccountKind.OFFICE_BALANCE, split.office_balance),
        (AccountKind.COMPANY_POOL, split.company_pool),
        (AccountKind.AI_AGENT_CREDITS, split.ai_agent_credits),
    ):
        if amount:
            ledger.post(EntryKind.USAGE, sources[kind], consumed, amount, usage_id=usage_id)
    if split.overage:
        ledger.post(EntryKind.OVERAGE, overage_of(office), consumed, split.overage, usage_id)
    return split


def pool_office_balances(ledger: Ledger, office_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Turning pooling on: the offices' own balances move into the shared balance.
    Returns what moved, per office."""
    moved: dict[uuid.UUID, int] = {}
    for office_id in office_ids:
        amount = ledger.balance(balance_of(office_id))
        if amount > 0:
            ledger.post(EntryKind.TRANSFER, balance_of(office_id), company_pool(), amount)
            moved[office_id] = amount
    return moved


def transfers_to_pool(moved: Mapping[uuid.UUID, int], currency: str) -> tuple[Transfer, ...]:
    """What `pool_office_balances` moved, as the transfers SetCreditPooling lists."""
    return tuple(
        Transfer(office, AccountKind.OFFICE_BALANCE, AccountKind.COMPANY_POOL, currency, amount)
        for office, amount in moved.items()
    )


def violations(
    accounts: Iterable[tuple[LedgerAccount, int, int | None]],
) -> list[Violation]:
    """The ledger rules a company's accounts break. Each item is an account, the sum of
    its entries (credits minus debits) and, for CONSUMED accounts, the total amount of
    the office's usage records."""
    found: list[Violation] = []
    totals: dict[str, int] = {}
    anchors: dict[str, tuple[LedgerAccount, int]] = {}
    for account, entries_sum, usage_sum in accounts:
        kind = account.key.kind
        totals[account.currency] = totals.get(account.currency, 0) + account.balance
        if kind is AccountKind.ISSUED:
            anchors[account.currency] = (account, entries_sum)
        if account.balance != entries_sum:
            found.append(Violation(account, entries_sum, "BALANCE_NOT_SUM_OF_ENTRIES"))
        if not sign_ok(kind, account.balance):
            rule = "BALANCE_BELOW_ZERO" if kind in NON_NEGATIVE else "BALANCE_ABOVE_ZERO"
            found.append(Violation(account, entries_sum, rule))
        if usage_sum is not None and usage_sum != account.balance:
            found.append(Violation(account, entries_sum, "CONSUMED_NOT_SUM_OF_USAGE"))
    for currency, total in sorted(totals.items()):
        if total != 0 and currency in anchors:
            account, entries_sum = anchors[currency]
            found.append(Violation(account, entries_sum, "CURRENCY_NOT_BALANCED"))
    return found
