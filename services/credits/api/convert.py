"""Proto <-> domain for the credits service, and the checks of request fields (each
failure names its field)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from libs.common import paging
from libs.common.errors import DomainError, invalid
from libs.common.handlers import next_page_token
from libs.common.idempotency import key_for
from libs.common.reasons import Reason
from libs.common.timestamps import timestamp
from libs.common.validation import (
    currency_field,
    optional_currency_field,
    optional_uuid_field,
    text_field,
    uuid_field,
)
from licensing.credits.v1 import credits_pb2 as pb
from services.credits.domain.alerts import MAX_THRESHOLDS, PERCENT_RANGE
from services.credits.domain.model import (
    DEFAULT_PERIOD_ANCHOR,
    MAX_AMOUNT,
    AccountKind,
    Balances,
    CreditAlert,
    Grant,
    GrantTarget,
    LedgerAccount,
    LedgerCheck,
    LedgerEntry,
    OfficeAccount,
    OfficeCap,
    OveragePolicy,
    PeriodOverage,
    Pooling,
    Split,
    Threshold,
    ThresholdKind,
    UsageKind,
    UsageRecord,
    UsageTotal,
)
from services.credits.repository.ledger import EntryFilter
from services.credits.repository.usage import UsageFilter
from services.credits.use_cases.accounts import AccountsPage
from services.credits.use_cases.grants import GrantCredits, Granted
from services.credits.use_cases.ledger import EntriesPage
from services.credits.use_cases.limits import (
    AlertsPage,
    CapsPage,
    ClearCap,
    SetCap,
    SetThresholds,
    Thresholds,
)
from services.credits.use_cases.pooling import PoolingChanged, SetPooling
from services.credits.use_cases.recording import RecordUsage
from services.credits.use_cases.usage import OverageQuery, UsagePage, UsageTotals

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CreditsService"].full_name
# A usage's request_id key is RecordUsage's, also for a record of BatchRecordUsage.
RECORD_USAGE_METHOD = f"/{SERVICE_NAME}/RecordUsage"
MAX_NOTE = 256

_KINDS = {
    pb.USAGE_KIND_CALLING: UsageKind.CALLING,
    pb.USAGE_KIND_MESSAGING: UsageKind.MESSAGING,
    pb.USAGE_KIND_FAX: UsageKind.FAX,
    pb.USAGE_KIND_AI_AGENT: UsageKind.AI_AGENT,
}
_KIND_PB = {v: k for k, v in _KINDS.items()}
_POLICIES = {
    pb.OVERAGE_POLICY_UNSPECIFIED: OveragePolicy.ALLOW,
    pb.OVERAGE_POLICY_ALLOW: OveragePolicy.ALLOW,
    pb.OVERAGE_POLICY_REJECT: OveragePolicy.REJECT,
}
_POLICY_PB = {
    OveragePolicy.ALLOW: pb.OVERAGE_POLICY_ALLOW,
    OveragePolicy.REJECT: pb.OVERAGE_POLICY_REJECT,
}
_TARGETS = {
    pb.GRANT_TARGET_COMPANY_POOL: GrantTarget.COMPANY_POOL,
    pb.GRANT_TARGET_OFFICE_BALANCE: GrantTarget.OFFICE_BALANCE,
    pb.GRANT_TARGET_AI_AGENT_CREDITS: GrantTarget.AI_AGENT_CREDITS,
}
_TARGET_PB = {v: k for k, v in _TARGETS.items()}
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


# --- fields -------------------------------------------------------------------------------


def amount_field(field: str, value: int, minimum: int = 1) -> int:
    """An amount of minor units between `minimum` and MAX_AMOUNT."""
    if value < minimum:
        raise invalid(field, f"must be at least {minimum}, got {value}", Reason.INVALID_AMOUNT.name)
    if value > MAX_AMOUNT:
        raise invalid(
            field, f"must be at most {MAX_AMOUNT}, got {value}", Reason.AMOUNT_TOO_LARGE.name
        )
    return value


def time_field(field: str, message: Timestamp, present: bool) -> datetime | None:
    """An optional timestamp between the years 2000 and 9000."""
    if not present:
        return None
    try:
        value: datetime = message.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise invalid(field, "is not a valid timestamp", Reason.INVALID_TIME.name) from None
    if not _EARLIEST <= value < _LATEST:
        raise invalid(
            field, f"must be between {_EARLIEST:%Y} and {_LATEST:%Y}", Reason.INVALID_TIME.name
        )
    return value


def _time_range(
    request: pb.ListUsageRequest | pb.GetUsageTotalsRequest,
) -> tuple[datetime | None, datetime | None]:
    return (
        time_field("start_time", request.start_time, request.HasField("start_time")),
        time_field("end_time", request.end_time, request.HasField("end_time")),
    )


def usage_kind_field(field: str, value: int) -> UsageKind:
    kind = _KINDS.get(value)  # type: ignore[call-overload]
    if kind is None:
        reason = Reason.MISSING_FIELD if value == pb.USAGE_KIND_UNSPECIFIED else None
        raise invalid(
            field,
            f"must be one of {', '.join(pb.UsageKind.keys()[1:])}",
            (reason or Reason.UNKNOWN_USAGE_KIND).name,
        )
    found: UsageKind = kind
    return found


def optional_usage_kind_field(field: str, value: int) -> UsageKind | None:
    return None if value == pb.USAGE_KIND_UNSPECIFIED else usage_kind_field(field, value)


def _entry_id(value: object) -> int:
    """A ledger entry id held in a page token."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(value)
    return value


# --- requests -> commands -----------------------------------------------------------------


def account(request: pb.PutAccountRequest) -> OfficeAccount:
    a = request.account
    company_id = uuid_field("account.company_id", a.company_id)
    policy = _POLICIES.get(a.overage_policy)
    if policy is None:
        raise invalid("account.overage_policy", "must be ALLOW or REJECT")
    anchor = time_field(
        "account.period_anchor_time", a.period_anchor_time, a.HasField("period_anchor_time")
    )
    return OfficeAccount(
        company_id=company_id,
        office_id=uuid_field("account.office_id", a.office_id),
        currency=currency_field("account.currency", a.currency),
        primary=a.primary,
        allowance=amount_field("account.allowance_minor", a.allowance_minor, minimum=0),
        period_anchor=anchor or DEFAULT_PERIOD_ANCHOR,
        overage_policy=policy,
    )


# The account fields an update mask may name, as the domain calls them.
_ACCOUNT_FIELDS = {
    "currency": "currency",
    "primary": "primary",
    "allowance_minor": "allowance",
    "period_anchor_time": "period_anchor",
    "overage_policy": "overage_policy",
}
MAX_OVERAGE_RANGE = timedelta(days=366)


def account_fields(request: pb.PutAccountRequest) -> frozenset[str]:
    """The fields a PutAccount changes (empty: the whole account)."""
    unknown = sorted(set(request.update_mask.paths) - _ACCOUNT_FIELDS.keys())
    if unknown:
        raise invalid("update_mask", f"cannot update {', '.join(unknown)[:200]}")
    return frozenset(_ACCOUNT_FIELDS[path] for path in request.update_mask.paths)


def _required_time(field: str, message: Timestamp, present: bool) -> datetime:
    """Any instant a Timestamp holds (the server's request checks refused the others)."""
    if not present:
        raise invalid(field, "is required", Reason.MISSING_FIELD.name)
    value: datetime = message.ToDatetime(tzinfo=UTC)
    return value


def overage_query(request: pb.GetPeriodOverageRequest) -> OverageQuery:
    company_id = uuid_field("company_id", request.company_id)
    start = _required_time("start_time", request.start_time, request.HasField("start_time"))
    end = _required_time("end_time", request.end_time, request.HasField("end_time"))
    if not (start < end and end - start <= MAX_OVERAGE_RANGE):
        raise invalid("end_time", "must be after start_time, at most 366 days later")
    return OverageQuery(company_id, start, end)


def accounts_page(request: pb.ListAccountsRequest) -> AccountsPage:
    company_id = uuid_field("company_id", request.company_id)
    size = paging.page_size(request.page_size)
    return AccountsPage(
        company_id,
        optional_currency_field("currency", request.currency),
        paging.single_key(request.page_token, paging.key_uuid),
        size,
    )


def set_pooling(request: pb.SetCreditPoolingRequest) -> SetPooling:
    return SetPooling(
        uuid_field("company_id", request.company_id),
        currency_field("currency", request.currency),
        request.enabled,
    )


def grant(request: pb.GrantCreditsRequest) -> GrantCredits:
    company_id = uuid_field("company_id", request.company_id)
    target = _TARGETS.get(request.target)
    if target is None:
        reason = Reason.MISSING_FIELD if request.target == 0 else Reason.INVALID_FIELD
        raise invalid(
            "target", "must be COMPANY_POOL, OFFICE_BALANCE or AI_AGENT_CREDITS", reason.name
        )
    office_id = optional_uuid_field("office_id", request.office_id)
    currency = optional_currency_field("currency", request.currency)
    if target is GrantTarget.COMPANY_POOL:
        if office_id is not None:
            raise invalid("office_id", "must be empty for the company pool")
        if currency is None:
            raise invalid("currency", "is required for the company pool", Reason.MISSING_FIELD.name)
    if target is GrantTarget.OFFICE_BALANCE and office_id is None:
        raise invalid("office_id", "is required for an office balance", Reason.MISSING_FIELD.name)
    return GrantCredits(
        company_id=company_id,
        target=target,
        office_id=office_id,
        currency=currency,
        amount=amount_field("amount_minor", request.amount_minor),
        note=text_field("note", request.note, MAX_NOTE, required=False),
    )


def record_usage(
    request: pb.RecordUsageRequest, company_id: uuid.UUID, prefix: str = ""
) -> RecordUsage:
    """A usage to record; `company_id` is the request's (or its batch's)."""
    if request.company_id != str(company_id):  # a batch's record names no company
        normalized = pb.RecordUsageRequest()
        normalized.CopyFrom(request)
        normalized.company_id = str(company_id)
        request = normalized
    key = key_for(RECORD_USAGE_METHOD, company_id, request)
    kind = usage_kind_field(prefix + "kind", request.kind)
    return RecordUsage(
        key=key,
        office_id=uuid_field(prefix + "office_id", request.office_id),
        kind=kind,
        amount=amount_field(prefix + "amount_minor", request.amount_minor),
        currency=optional_currency_field(prefix + "currency", request.currency),
        occurred_at=time_field(
            prefix + "occur_time", request.occur_time, request.HasField("occur_time")
        ),
    )


def batch_records(
    request: pb.BatchRecordUsageRequest, max_records: int
) -> list[RecordUsage | DomainError]:
    """Each record's usage, or why it is invalid."""
    company_id = uuid_field("company_id", request.company_id)
    if not request.requests:
        raise invalid("requests", "is required", Reason.MISSING_FIELD.name)
    if len(request.requests) > max_records:
        raise invalid("requests", f"at most {max_records} per call", Reason.TOO_MANY_RECORDS.name)
    records: list[RecordUsage | DomainError] = []
    for index, sub in enumerate(request.requests):
        prefix = f"requests[{index}]."
        try:
            if sub.company_id and sub.company_id != request.company_id:
                raise invalid(prefix + "company_id", "must be empty or equal company_id")
            records.append(record_usage(sub, company_id, prefix))
        except DomainError as error:
            records.append(error)
    return records


def usage_page(request: pb.ListUsageRequest) -> UsagePage:
    company_id = uuid_field("company_id", request.company_id)
    office_id = optional_uuid_field("office_id", request.office_id)
    kind = optional_usage_kind_field("kind", request.kind)
    currency = optional_currency_field("currency", request.currency)
    start, end = _time_range(request)
    where = UsageFilter(company_id, office_id, kind, currency, start, end)
    size = paging.page_size(request.page_size)
    return UsagePage(where, paging.time_key(request.page_token), size)


def totals_filter(request: pb.GetUsageTotalsRequest) -> UsageFilter:
    company_id = uuid_field("company_id", request.company_id)
    currency = optional_currency_field("currency", request.currency)
    kind = optional_usage_kind_field("kind", request.kind)
    start, end = _time_range(request)
    return UsageFilter(company_id, None, kind, currency, start, end)


def entries_page(request: pb.ListLedgerEntriesRequest) -> EntriesPage:
    size = paging.page_size(request.page_size)
    after = paging.single_key(request.page_token, _entry_id)
    where = EntryFilter(
        company_id=uuid_field("company_id", request.company_id),
        office_id=optional_uuid_field("office_id", request.office_id),
        currency=optional_currency_field("currency", request.currency),
        usage_id=optional_uuid_field("usage_id", request.usage_id),
    )
    return EntriesPage(where, after, size)


def set_cap(request: pb.SetOfficeCreditCapRequest) -> SetCap:
    return SetCap(
        uuid_field("company_id", request.company_id),
        uuid_field("office_id", request.office_id),
        amount_field("cap_minor", request.cap_minor, minimum=0),
    )


def clear_cap(request: pb.ClearOfficeCreditCapRequest) -> ClearCap:
    return ClearCap(
        uuid_field("company_id", request.company_id), uuid_field("office_id", request.office_id)
    )


def caps_page(request: pb.ListOfficeCreditCapsRequest) -> CapsPage:
    company_id = uuid_field("company_id", request.company_id)
    size = paging.page_size(request.page_size)
    after = paging.single_key(request.page_token, paging.key_uuid)
    return CapsPage(company_id, after, size)


def threshold(field: str, message: pb.CreditThreshold) -> Threshold:
    level = message.WhichOneof("level")
    if level == "balance_minor":
        value = amount_field(field + ".balance_minor", message.balance_minor, minimum=0)
        return Threshold(ThresholdKind.BALANCE, value)
    if level == "percent":
        if message.percent not in PERCENT_RANGE:
            raise invalid(field + ".percent", f"must be 1 to 99, got {message.percent}")
        return Threshold(ThresholdKind.PERCENT, message.percent)
    raise invalid(field, "needs balance_minor or percent", Reason.MISSING_FIELD.name)


def set_thresholds(request: pb.SetCreditThresholdsRequest) -> SetThresholds:
    company_id = uuid_field("company_id", request.company_id)
    currency = currency_field("currency", request.currency)
    if len(request.thresholds) > MAX_THRESHOLDS:
        raise invalid(
            "thresholds",
            f"at most {MAX_THRESHOLDS} per currency",
            Reason.TOO_MANY_THRESHOLDS.name,
        )
    found: list[Threshold] = []
    for index, message in enumerate(request.thresholds):
        field = f"thresholds[{index}]"
        parsed = threshold(field, message)
        if parsed in found:
            raise invalid(field, "is named twice", Reason.DUPLICATE_THRESHOLD.name)
        found.append(parsed)
    return SetThresholds(company_id, currency, tuple(sorted(found)))


def alerts_page(request: pb.ListCreditAlertsRequest) -> AlertsPage:
    return AlertsPage(
        uuid_field("company_id", request.company_id),
        optional_currency_field("currency", request.currency),
        paging.time_key(request.page_token),
        paging.page_size(request.page_size),
    )


# --- domain -> proto ----------------------------------------------------------------------


def account_pb(account: OfficeAccount) -> pb.Account:
    return pb.Account(
        company_id=str(account.company_id),
        office_id=str(account.office_id),
        currency=account.currency,
        primary=account.primary,
        allowance_minor=account.allowance,
        period_anchor_time=timestamp(account.period_anchor),
        overage_policy=_POLICY_PB[account.overage_policy],
        create_time=timestamp(account.created_at),
        update_time=timestamp(account.updated_at),
    )


def pooling_pb(pooling: Pooling) -> pb.CreditPooling:
    return pb.CreditPooling(
        company_id=str(pooling.company_id),
        currency=pooling.currency,
        enabled=pooling.enabled,
        update_time=timestamp(pooling.updated_at),
    )


def split_pb(split: Split) -> pb.UsageSplit:
    return pb.UsageSplit(
        allowance_minor=split.allowance,
        office_balance_minor=split.office_balance,
        company_pool_minor=split.company_pool,
        ai_agent_credits_minor=split.ai_agent_credits,
        overage_minor=split.overage,
    )


def usage_pb(record: UsageRecord) -> pb.UsageRecord:
    return pb.UsageRecord(
        usage_id=str(record.usage_id),
        request_id=record.request_id,
        company_id=str(record.company_id),
        office_id=str(record.office_id),
        kind=_KIND_PB[record.kind],
        currency=record.currency,
        amount_minor=record.amount,
        occur_time=timestamp(record.occurred_at),
        period_start_time=timestamp(record.period.start),
        period_end_time=timestamp(record.period.end),
        split=split_pb(record.split),
        record_time=timestamp(record.recorded_at),
    )


def grant_pb(grant: Grant) -> pb.Grant:
    return pb.Grant(
        grant_id=str(grant.grant_id),
        company_id=str(grant.company_id),
        target=_TARGET_PB[grant.target],
        office_id=str(grant.office_id) if grant.office_id else "",
        currency=grant.currency,
        amount_minor=grant.amount,
        note=grant.note,
        create_time=timestamp(grant.created_at),
    )


def _account_kind_pb(kind: AccountKind) -> pb.LedgerAccountKind.ValueType:
    return pb.LedgerAccountKind.Value(f"LEDGER_ACCOUNT_KIND_{kind.value}")


def ledger_account_pb(account: LedgerAccount) -> pb.LedgerAccount:
    return pb.LedgerAccount(
        account_id=account.account_id,
        kind=_account_kind_pb(account.key.kind),
        currency=account.currency,
        office_id=str(account.key.office_id) if account.key.office_id else "",
        period_start_time=timestamp(account.key.period_start),
        balance_minor=account.balance,
    )


def entry_pb(entry: LedgerEntry) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        entry_id=entry.entry_id,
        kind=pb.EntryKind.Value(f"ENTRY_KIND_{entry.kind.value}"),
        currency=entry.currency,
        debit_account=ledger_account_pb(entry.debit),
        credit_account=ledger_account_pb(entry.credit),
        amount_minor=entry.amount,
        usage_id=str(entry.usage_id) if entry.usage_id else "",
        grant_id=str(entry.grant_id) if entry.grant_id else "",
        create_time=timestamp(entry.created_at),
    )


def total_pb(total: UsageTotal) -> pb.UsageTotal:
    return pb.UsageTotal(
        office_id=str(total.office_id) if total.office_id else "",
        currency=total.currency,
        record_count=total.count,
        amount_minor=total.amount,
        split=split_pb(total.split),
    )


def record_error_pb(error: Exception) -> pb.RecordError:
    """A failed record of a batch: the status RecordUsage would have answered."""
    if isinstance(error, DomainError):
        return pb.RecordError(
            code=grpc.StatusCode[error.kind.value].value[0],
            reason=error.reason,
            message=error.message,
            metadata=error.metadata,
        )
    return pb.RecordError(
        code=grpc.StatusCode.INTERNAL.value[0], reason="INTERNAL", message="internal error"
    )


def cap_pb(cap: OfficeCap) -> pb.OfficeCreditCap:
    return pb.OfficeCreditCap(
        company_id=str(cap.company_id),
        office_id=str(cap.office_id),
        currency=cap.currency,
        cap_minor=cap.cap,
        period_start_time=timestamp(cap.period.start),
        period_end_time=timestamp(cap.period.end),
        drawn_minor=cap.drawn,
        update_time=timestamp(cap.updated_at),
    )


def threshold_pb(threshold: Threshold) -> pb.CreditThreshold:
    if threshold.kind is ThresholdKind.BALANCE:
        return pb.CreditThreshold(balance_minor=threshold.value)
    return pb.CreditThreshold(percent=threshold.value)


def alert_pb(alert: CreditAlert) -> pb.CreditAlert:
    return pb.CreditAlert(
        alert_id=str(alert.alert_id),
        company_id=str(alert.company_id),
        currency=alert.currency,
        threshold=threshold_pb(alert.threshold),
        level_minor=alert.level,
        balance_minor=alert.balance,
        period_start_time=timestamp(alert.period.start),
        period_end_time=timestamp(alert.period.end),
        usage_id=str(alert.usage_id),
        office_id=str(alert.office_id),
        create_time=timestamp(alert.created_at),
    )


# --- responses ----------------------------------------------------------------------------


def overage_response(found: list[PeriodOverage]) -> pb.GetPeriodOverageResponse:
    return pb.GetPeriodOverageResponse(
        overages=[
            pb.PeriodOverage(
                office_id=str(o.office_id),
                currency=o.currency,
                period_start_time=timestamp(o.period.start),
                period_end_time=timestamp(o.period.end),
                overage_minor=o.overage,
                record_count=o.count,
            )
            for o in found
        ]
    )


def put_account_response(saved: OfficeAccount) -> pb.PutAccountResponse:
    return pb.PutAccountResponse(account=account_pb(saved))


def pooling_response(result: PoolingChanged) -> pb.SetCreditPoolingResponse:
    return pb.SetCreditPoolingResponse(
        pooling=pooling_pb(result.pooling),
        transfers=[
            pb.Transfer(
                office_id=str(t.office_id),
                from_kind=_account_kind_pb(t.from_kind),
                to_kind=_account_kind_pb(t.to_kind),
                currency=t.currency,
                amount_minor=t.amount,
            )
            for t in result.transfers
        ],
        company_pool_balance_minor=result.pool_balance,
    )


def granted_response(result: Granted) -> pb.GrantCreditsResponse:
    return pb.GrantCreditsResponse(grant=grant_pb(result.grant), balance_minor=result.balance)


def encode_usage(record: UsageRecord) -> bytes:
    """RecordUsage's response, as stored for the request_id and answered (the writer's
    codec, wired in app.py)."""
    return pb.RecordUsageResponse(usage=usage_pb(record)).SerializeToString()


def batch_response(
    request: pb.BatchRecordUsageRequest,
    records: list[RecordUsage | DomainError],
    outcomes: list[bytes | Exception],
) -> pb.BatchRecordUsageResponse:
    """One result per record, in order; `outcomes` are those of the valid records."""
    answered = iter(outcomes)
    results = []
    for sub, record in zip(request.requests, records, strict=True):
        outcome = next(answered) if isinstance(record, RecordUsage) else record
        result = pb.RecordResult(request_id=sub.request_id)
        if isinstance(outcome, bytes):
            result.usage.CopyFrom(pb.RecordUsageResponse.FromString(outcome).usage)
        else:
            result.error.CopyFrom(record_error_pb(outcome))
        results.append(result)
    return pb.BatchRecordUsageResponse(results=results)


def accounts_response(accounts: list[OfficeAccount], size: int) -> pb.ListAccountsResponse:
    page, token = next_page_token(accounts, size, lambda a: paging.encode_token([str(a.office_id)]))
    return pb.ListAccountsResponse(accounts=[account_pb(a) for a in page], next_page_token=token)


def usage_list_response(records: list[UsageRecord], size: int) -> pb.ListUsageResponse:
    page, token = next_page_token(
        records, size, lambda r: paging.time_key_token(r.occurred_at, r.usage_id)
    )
    return pb.ListUsageResponse(usage=[usage_pb(r) for r in page], next_page_token=token)


def totals_response(totals: UsageTotals) -> pb.GetUsageTotalsResponse:
    return pb.GetUsageTotalsResponse(
        office_totals=[total_pb(t) for t in totals.offices],
        company_totals=[total_pb(t) for t in totals.companies],
    )


def entries_response(entries: list[LedgerEntry], size: int) -> pb.ListLedgerEntriesResponse:
    page, token = next_page_token(entries, size, lambda e: paging.encode_token([e.entry_id]))
    return pb.ListLedgerEntriesResponse(entries=[entry_pb(e) for e in page], next_page_token=token)


def balances_response(balances: Balances) -> pb.GetBalancesResponse:
    return pb.GetBalancesResponse(
        balance_time=timestamp(balances.taken_at),
        company_pools=[
            pb.CompanyPoolBalance(
                currency=p.currency, pooling_enabled=p.pooling_enabled, balance_minor=p.balance
            )
            for p in balances.pools
        ],
        offices=[
            pb.OfficeBalance(
                office_id=str(o.office_id),
                currency=o.currency,
                primary=o.primary,
                period_start_time=timestamp(o.period.start),
                period_end_time=timestamp(o.period.end),
                allowance_minor=o.allowance,
                allowance_remaining_minor=o.allowance_remaining,
                balance_minor=o.balance,
                ai_agent_credits_minor=o.ai_agent_credits,
                consumed_minor=o.consumed,
                overage_minor=o.overage,
            )
            for o in balances.offices
        ],
    )


def check_response(check: LedgerCheck) -> pb.CheckLedgerResponse:
    return pb.CheckLedgerResponse(
        consistent=check.consistent,
        accounts_checked=check.accounts,
        entries_checked=check.entries,
        violations=[
            pb.LedgerViolation(
                account=ledger_account_pb(v.account),
                entries_sum_minor=v.entries_sum,
                rule=v.rule,
            )
            for v in check.violations
        ],
        check_time=timestamp(check.checked_at),
    )


def set_cap_response(cap: OfficeCap) -> pb.SetOfficeCreditCapResponse:
    return pb.SetOfficeCreditCapResponse(cap=cap_pb(cap))


def clear_cap_response(cleared: bool) -> pb.ClearOfficeCreditCapResponse:
    return pb.ClearOfficeCreditCapResponse(cleared=cleared)


def caps_response(caps: list[OfficeCap], size: int) -> pb.ListOfficeCreditCapsResponse:
    page, token = next_page_token(caps, size, lambda c: paging.encode_token([str(c.office_id)]))
    return pb.ListOfficeCreditCapsResponse(caps=[cap_pb(c) for c in page], next_page_token=token)


def set_thresholds_response(result: Thresholds) -> pb.SetCreditThresholdsResponse:
    return pb.SetCreditThresholdsResponse(thresholds=[threshold_pb(t) for t in result.thresholds])


def thresholds_response(result: Thresholds) -> pb.GetCreditThresholdsResponse:
    return pb.GetCreditThresholdsResponse(
        thresholds=[threshold_pb(t) for t in result.thresholds], top_up_level_minor=result.top_up
    )


def alerts_response(alerts: list[CreditAlert], size: int) -> pb.ListCreditAlertsResponse:
    page, token = next_page_token(
        alerts, size, lambda a: paging.time_key_token(a.created_at, a.alert_id)
    )
    return pb.ListCreditAlertsResponse(alerts=[alert_pb(a) for a in page], next_page_token=token)
