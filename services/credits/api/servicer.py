"""The credits service's gRPC handlers: validate, build the command, run the use case,
convert the result. Mutating handlers return the response's bytes, stored with the
request_id (the server sends them as they are), so this class does not inherit the
generated servicer base class."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from libs.common import call_context
from libs.common.event_stream import EventStream
from libs.common.handlers import mutation, once_for
from libs.common.validation import currency_field, optional_currency_field, uuid_field
from licensing.credits.v1 import credits_pb2 as pb
from services.credits.api import convert
from services.credits.unit_of_work import CreditsUnitOfWork
from services.credits.use_cases import accounts, grants, ledger, limits, pooling, usage
from services.credits.use_cases.accounts import PutAccount
from services.credits.use_cases.recording import RecordUsage, UsageRecorder


class CreditsServicer:
    def __init__(
        self,
        uow: CreditsUnitOfWork,
        put_account: PutAccount,
        recorder: UsageRecorder,
        max_batch_records: int,
        events: EventStream,
    ) -> None:
        self._uow = uow
        self._put_account = put_account
        self._recorder = recorder
        self._max_batch_records = max_batch_records
        self._events = events

    # --- accounts -------------------------------------------------------------------------

    async def PutAccount(
        self, request: pb.PutAccountRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        account = convert.account(request)
        fields = convert.account_fields(request)
        return await once_for(
            self._uow,
            request,
            account,
            lambda given, tx: self._put_account(given, tx, fields),
            convert.put_account_response,
        )

    async def GetAccount(
        self, request: pb.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAccountResponse:
        company_id = uuid_field("company_id", request.company_id)
        office_id = uuid_field("office_id", request.office_id)
        found = await accounts.get_account(company_id, office_id, self._uow)
        return pb.GetAccountResponse(account=convert.account_pb(found))

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAccountsResponse:
        page = convert.accounts_page(request)
        found = await accounts.list_accounts(page, self._uow)
        return convert.accounts_response(found, page.size)

    # --- pooling and grants ---------------------------------------------------------------

    SetCreditPooling = mutation(convert.set_pooling, pooling.set_pooling, convert.pooling_response)

    async def GetCreditPooling(
        self, request: pb.GetCreditPoolingRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCreditPoolingResponse:
        company_id = uuid_field("company_id", request.company_id)
        currency = currency_field("currency", request.currency)
        found = await pooling.get_pooling(company_id, currency, self._uow)
        return pb.GetCreditPoolingResponse(pooling=convert.pooling_pb(found))

    GrantCredits = mutation(convert.grant, grants.grant_credits, convert.granted_response)

    # --- usage ----------------------------------------------------------------------------

    async def RecordUsage(
        self, request: pb.RecordUsageRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        company_id = uuid_field("company_id", request.company_id)
        command = convert.record_usage(request, company_id)
        return await self._recorder.record(command, call_context.time_remaining())

    async def BatchRecordUsage(
        self, request: pb.BatchRecordUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchRecordUsageResponse:
        records = convert.batch_records(request, self._max_batch_records)
        valid = [r for r in records if isinstance(r, RecordUsage)]
        outcomes = await self._recorder.record_each(valid, call_context.time_remaining())
        return convert.batch_response(request, records, outcomes)

    async def GetUsage(
        self, request: pb.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUsageResponse:
        company_id = uuid_field("company_id", request.company_id)
        usage_id = uuid_field("usage_id", request.usage_id)
        found = await usage.get_usage(company_id, usage_id, self._uow)
        return pb.GetUsageResponse(usage=convert.usage_pb(found))

    async def ListUsage(
        self, request: pb.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsageResponse:
        page = convert.usage_page(request)
        found = await usage.list_usage(page, self._uow)
        return convert.usage_list_response(found, page.size)

    async def GetUsageTotals(
        self, request: pb.GetUsageTotalsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUsageTotalsResponse:
        totals = await usage.usage_totals(convert.totals_filter(request), self._uow)
        return convert.totals_response(totals)

    # --- balances and the ledger ----------------------------------------------------------

    async def GetBalances(
        self, request: pb.GetBalancesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBalancesResponse:
        company_id = uuid_field("company_id", request.company_id)
        currency = optional_currency_field("currency", request.currency)
        found = await ledger.get_balances(company_id, currency, self._uow)
        return convert.balances_response(found)

    async def ListLedgerEntries(
        self, request: pb.ListLedgerEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLedgerEntriesResponse:
        page = convert.entries_page(request)
        found = await ledger.list_entries(page, self._uow)
        return convert.entries_response(found, page.size)

    async def CheckLedger(
        self, request: pb.CheckLedgerRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckLedgerResponse:
        company_id = uuid_field("company_id", request.company_id)
        check = await ledger.check_ledger(company_id, self._uow)
        return convert.check_response(check)

    async def GetPeriodOverage(
        self, request: pb.GetPeriodOverageRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPeriodOverageResponse:
        found = await usage.period_overage(convert.overage_query(request), self._uow)
        return convert.overage_response(found)

    # --- events ---------------------------------------------------------------------------

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        async for message in self._events.watch(request):
            yield message

    # --- caps, thresholds and alerts ------------------------------------------------------

    SetOfficeCreditCap = mutation(convert.set_cap, limits.set_cap, convert.set_cap_response)

    ClearOfficeCreditCap = mutation(convert.clear_cap, limits.clear_cap, convert.clear_cap_response)

    async def ListOfficeCreditCaps(
        self, request: pb.ListOfficeCreditCapsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOfficeCreditCapsResponse:
        page = convert.caps_page(request)
        found = await limits.list_caps(page, self._uow)
        return convert.caps_response(found, page.size)

    SetCreditThresholds = mutation(
        convert.set_thresholds, limits.set_thresholds, convert.set_thresholds_response
    )

    async def GetCreditThresholds(
        self, request: pb.GetCreditThresholdsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCreditThresholdsResponse:
        company_id = uuid_field("company_id", request.company_id)
        currency = currency_field("currency", request.currency)
        found = await limits.get_thresholds(company_id, currency, self._uow)
        return convert.thresholds_response(found)

    async def ListCreditAlerts(
        self, request: pb.ListCreditAlertsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCreditAlertsResponse:
        page = convert.alerts_page(request)
        found = await limits.list_alerts(page, self._uow)
        return convert.alerts_response(found, page.size)
