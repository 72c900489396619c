"""CreditsService over gRPC: proto ⇄ domain translation and field validation only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from libs.common import paging
from libs.common.errors import DomainError, invalid
from libs.common.idempotency import IdempotencyKey, Once, key_for
from libs.common.timestamps import timestamp
from libs.common.validation import (
    currency_field,
    optional_currency_field,
    optional_uuid_field,
    text_field,
    uuid_field,
)
from licensing.credits.v1 import credits_pb2 as pb
from licensing.credits.v1 import credits_pb2_grpc
from services.credits.domain.model import (
    DEFAULT_PERIOD_ANCHOR,
    MAX_AMOUNT,
    AccountKind,
    Grant,
    GrantTarget,
    LedgerAccount,
    LedgerEntry,
    OfficeAccount,
    OveragePolicy,
    Pooling,
    Split,
    UsageKind,
    UsageRecord,
    UsageTotal,
)
from services.credits.repository import UsageFilter
from services.credits.service import (
    CreditsService,
    GrantCredits,
    Granted,
    PoolingChanged,
    RecordUsage,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CreditsService"].full_name

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
MAX_NOTE = 256


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


def _encode_usage(record: UsageRecord) -> bytes:
    return pb.RecordUsageResponse(usage=usage_pb(record)).SerializeToString()


def _encode_granted(result: Granted) -> bytes:
    return pb.GrantCreditsResponse(
        grant=grant_pb(result.grant), balance_minor=result.balance
    ).SerializeToString()


def _encode_pooling(result: PoolingChanged) -> bytes:
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
    ).SerializeToString()


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


# --- proto -> domain ----------------------------------------------------------------------


def amount_field(field: str, value: int, minimum: int = 1) -> int:
    """An amount of minor units between `minimum` and MAX_AMOUNT."""
    if value < minimum:
        raise invalid(field, f"must be at least {minimum}, got {value}", "INVALID_AMOUNT")
    if value > MAX_AMOUNT:
        raise invalid(field, f"must be at most {MAX_AMOUNT}, got {value}", "AMOUNT_TOO_LARGE")
    return value


def time_field(field: str, message: Timestamp, present: bool) -> datetime | None:
    """An optional timestamp between the years 2000 and 9000."""
    if not present:
        return None
    try:
        value: datetime = message.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise invalid(field, "is not a valid timestamp", "INVALID_TIME") from None
    if not _EARLIEST <= value < _LATEST:
        raise invalid(field, f"must be between {_EARLIEST:%Y} and {_LATEST:%Y}", "INVALID_TIME")
    return value


def _kind(field: str, value: int, required: bool = True) -> UsageKind | None:
    if value == pb.USAGE_KIND_UNSPECIFIED and not required:
        return None
    kind = _KINDS.get(value)  # type: ignore[call-overload]
    if kind is None:
        reason = "MISSING_FIELD" if value == pb.USAGE_KIND_UNSPECIFIED else "UNKNOWN_USAGE_KIND"
        raise invalid(field, f"must be one of {', '.join(pb.UsageKind.keys()[1:])}", reason)
    found: UsageKind = kind
    return found


def _usage_key(request: pb.RecordUsageRequest, company_id: uuid.UUID) -> IdempotencyKey:
    """A usage's key; the same for RecordUsage and for a record of BatchRecordUsage."""
    normalized = pb.RecordUsageRequest()
    normalized.CopyFrom(request)
    normalized.company_id = str(company_id)
    return key_for(_method("RecordUsage"), company_id, normalized)


def _usage_command(
    request: pb.RecordUsageRequest, company_id: uuid.UUID, prefix: str = ""
) -> tuple[RecordUsage, Once[UsageRecord]]:
    once = Once(_usage_key(request, company_id), _encode_usage)
    kind = _kind(prefix + "kind", request.kind)
    assert kind is not None
    command = RecordUsage(
        company_id=company_id,
        office_id=uuid_field(prefix + "office_id", request.office_id),
        kind=kind,
        amount=amount_field(prefix + "amount_minor", request.amount_minor),
        currency=optional_currency_field(prefix + "currency", request.currency),
        occurred_at=time_field(
            prefix + "occur_time", request.occur_time, request.HasField("occur_time")
        ),
        request_id=request.request_id,
    )
    return command, once


def _method(name: str) -> str:
    return f"/{SERVICE_NAME}/{name}"


def _time_remaining(context: grpc.aio.ServicerContext) -> float | None:
    remaining: float | None = context.time_remaining()
    return remaining


def _token_values(token: list[object] | None, count: int) -> list[object] | None:
    if token is not None and len(token) != count:
        raise invalid("page_token", "is not a token this service issued")
    return token


class CreditsServicer(credits_pb2_grpc.CreditsServiceServicer):
    def __init__(self, service: CreditsService, max_batch_records: int = 1000) -> None:
        self._service = service
        self._max_batch_records = max_batch_records

    # --- accounts -------------------------------------------------------------------------

    async def PutAccount(
        self, request: pb.PutAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.PutAccountResponse:
        a = request.account
        company_id = uuid_field("account.company_id", a.company_id)
        policy = _POLICIES.get(a.overage_policy)
        if policy is None:
            raise invalid("account.overage_policy", "must be ALLOW or REJECT")
        anchor = time_field(
            "account.period_anchor_time", a.period_anchor_time, a.HasField("period_anchor_time")
        )
        account = OfficeAccount(
            company_id=company_id,
            office_id=uuid_field("account.office_id", a.office_id),
            currency=currency_field("account.currency", a.currency),
            primary=a.primary,
            allowance=amount_field("account.allowance_minor", a.allowance_minor, minimum=0),
            period_anchor=anchor or DEFAULT_PERIOD_ANCHOR,
            overage_policy=policy,
        )
        once: Once[OfficeAccount] = Once(
            key_for(_method("PutAccount"), company_id, request),
            lambda r: pb.PutAccountResponse(account=account_pb(r)).SerializeToString(),
        )
        return pb.PutAccountResponse.FromString(await self._service.put_account(account, once))

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAccountResponse:
        account = await self._service.get_account(
            uuid_field("company_id", request.company_id), uuid_field("office_id", request.office_id)
        )
        return pb.GetAccountResponse(account=account_pb(account))

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAccountsResponse:
        company_id = uuid_field("company_id", request.company_id)
        size = paging.page_size(request.page_size)
        token = _token_values(paging.decode_token(request.page_token), 1)
        after = _token_uuid(token[0]) if token else None
        accounts = await self._service.list_accounts(
            company_id, optional_currency_field("currency", request.currency), after, size + 1
        )
        next_token = (
            paging.encode_token([str(accounts[size - 1].office_id)]) if len(accounts) > size else ""
        )
        return pb.ListAccountsResponse(
            accounts=[account_pb(a) for a in accounts[:size]], next_page_token=next_token
        )

    # --- pooling and grants ---------------------------------------------------------------

    async def SetCreditPooling(
        self, request: pb.SetCreditPoolingRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetCreditPoolingResponse:
        company_id = uuid_field("company_id", request.company_id)
        currency = currency_field("currency", request.currency)
        once = Once(key_for(_method("SetCreditPooling"), company_id, request), _encode_pooling)
        encoded = await self._service.set_pooling(company_id, currency, request.enabled, once)
        return pb.SetCreditPoolingResponse.FromString(encoded)

    async def GetCreditPooling(
        self, request: pb.GetCreditPoolingRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCreditPoolingResponse:
        pooling = await self._service.get_pooling(
            uuid_field("company_id", request.company_id),
            currency_field("currency", request.currency),
        )
        return pb.GetCreditPoolingResponse(pooling=pooling_pb(pooling))

    async def GrantCredits(
        self, request: pb.GrantCreditsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GrantCreditsResponse:
        company_id = uuid_field("company_id", request.company_id)
        target = _TARGETS.get(request.target)
        if target is None:
            reason = "MISSING_FIELD" if request.target == 0 else "INVALID_FIELD"
            raise invalid(
                "target", "must be COMPANY_POOL, OFFICE_BALANCE or AI_AGENT_CREDITS", reason
            )
        office_id = optional_uuid_field("office_id", request.office_id)
        currency = optional_currency_field("currency", request.currency)
        if target is GrantTarget.COMPANY_POOL:
            if office_id is not None:
                raise invalid("office_id", "must be empty for the company pool")
            if currency is None:
                raise invalid("currency", "is required for the company pool", "MISSING_FIELD")
        if target is GrantTarget.OFFICE_BALANCE and office_id is None:
            raise invalid("office_id", "is required for an office balance", "MISSING_FIELD")
        command = GrantCredits(
            company_id=company_id,
            target=target,
            office_id=office_id,
            currency=currency,
            amount=amount_field("amount_minor", request.amount_minor),
            note=text_field("note", request.note, MAX_NOTE, required=False),
        )
        once = Once(key_for(_method("GrantCredits"), company_id, request), _encode_granted)
        return pb.GrantCreditsResponse.FromString(await self._service.grant(command, once))

    # --- usage ----------------------------------------------------------------------------

    async def RecordUsage(
        self, request: pb.RecordUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordUsageResponse:
        company_id = uuid_field("company_id", request.company_id)
        command, once = _usage_command(request, company_id)
        encoded = await self._service.record_usage(command, once, _time_remaining(context))
        return pb.RecordUsageResponse.FromString(encoded)

    async def BatchRecordUsage(
        self, request: pb.BatchRecordUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchRecordUsageResponse:
        company_id = uuid_field("company_id", request.company_id)
        if not request.requests:
            raise invalid("requests", "is required", "MISSING_FIELD")
        if len(request.requests) > self._max_batch_records:
            raise invalid(
                "requests", f"at most {self._max_batch_records} per call", "TOO_MANY_RECORDS"
            )
        results = [pb.RecordResult(request_id=r.request_id) for r in request.requests]
        items, positions = [], []
        for index, sub in enumerate(request.requests):
            prefix = f"requests[{index}]."
            try:
                if sub.company_id and sub.company_id != request.company_id:
                    raise invalid(prefix + "company_id", "must be empty or equal company_id")
                items.append(_usage_command(sub, company_id, prefix))
                positions.append(index)
            except DomainError as error:
                results[index].error.CopyFrom(record_error_pb(error))
        outcomes = await self._service.record_usages(items, _time_remaining(context))
        for index, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, bytes):
                results[index].usage.CopyFrom(pb.RecordUsageResponse.FromString(outcome).usage)
            else:
                results[index].error.CopyFrom(record_error_pb(outcome))
        return pb.BatchRecordUsageResponse(results=results)

    async def GetUsage(
        self, request: pb.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUsageResponse:
        record = await self._service.get_usage(
            uuid_field("company_id", request.company_id), uuid_field("usage_id", request.usage_id)
        )
        return pb.GetUsageResponse(usage=usage_pb(record))

    async def ListUsage(
        self, request: pb.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsageResponse:
        where = UsageFilter(
            company_id=uuid_field("company_id", request.company_id),
            office_id=optional_uuid_field("office_id", request.office_id),
            kind=_kind("kind", request.kind, required=False),
            currency=optional_currency_field("currency", request.currency),
            start=time_field("start_time", request.start_time, request.HasField("start_time")),
            end=time_field("end_time", request.end_time, request.HasField("end_time")),
        )
        size = paging.page_size(request.page_size)
        after = paging.time_key(request.page_token)
        records = await self._service.list_usage(where, after, size + 1)
        next_token = ""
        if len(records) > size:
            last = records[size - 1]
            next_token = paging.time_key_token(last.occurred_at, last.usage_id)
        return pb.ListUsageResponse(
            usage=[usage_pb(r) for r in records[:size]], next_page_token=next_token
        )

    async def GetUsageTotals(
        self, request: pb.GetUsageTotalsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUsageTotalsResponse:
        offices, companies = await self._service.usage_totals(
            uuid_field("company_id", request.company_id),
            optional_currency_field("currency", request.currency),
            _kind("kind", request.kind, required=False),
            time_field("start_time", request.start_time, request.HasField("start_time")),
            time_field("end_time", request.end_time, request.HasField("end_time")),
        )
        return pb.GetUsageTotalsResponse(
            office_totals=[total_pb(t) for t in offices],
            company_totals=[total_pb(t) for t in companies],
        )

    # --- balances and the ledger ----------------------------------------------------------

    async def GetBalances(
        self, request: pb.GetBalancesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBalancesResponse:
        balances = await self._service.balances(
            uuid_field("company_id", request.company_id),
            optional_currency_field("currency", request.currency),
        )
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

    async def ListLedgerEntries(
        self, request: pb.ListLedgerEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLedgerEntriesResponse:
        size = paging.page_size(request.page_size)
        token = _token_values(paging.decode_token(request.page_token), 1)
        after = None
        if token:
            if not isinstance(token[0], int) or isinstance(token[0], bool):
                raise invalid("page_token", "is not a token this service issued")
            after = token[0]
        entries = await self._service.list_entries(
            uuid_field("company_id", request.company_id),
            optional_uuid_field("office_id", request.office_id),
            optional_currency_field("currency", request.currency),
            optional_uuid_field("usage_id", request.usage_id),
            after,
            size + 1,
        )
        next_token = (
            paging.encode_token([entries[size - 1].entry_id]) if len(entries) > size else ""
        )
        return pb.ListLedgerEntriesResponse(
            entries=[entry_pb(e) for e in entries[:size]], next_page_token=next_token
        )

    async def CheckLedger(
        self, request: pb.CheckLedgerRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckLedgerResponse:
        check = await self._service.check_ledger(uuid_field("company_id", request.company_id))
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


def _token_uuid(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise invalid("page_token", "is not a token this service issued") from None
