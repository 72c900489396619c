"""The billing service's gRPC handlers: validate, build the command, run the use case,
convert the result. Mutating handlers return the response's bytes, stored with the
request_id (the server sends them as they are), so this class does not inherit the
generated servicer base class.

Most of billing's mutations call the pool before they record anything: such a handler
first answers a request_id already done with its stored response, then runs the use
case (the pool calls carry request_ids derived from the caller's, so a retry replays
them), and records the result with the request_id in one transaction (`handlers.once_after`). A
purchase keeps its own durable record instead (`use_cases/purchases.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import TypeAlias, TypeVar

import grpc

from libs.common import call_context, paging
from libs.common.event_stream import EventStream
from libs.common.handlers import method_name, once_after
from libs.common.idempotency import key_for
from libs.common.validation import currency_field, uuid_field
from licensing.billing.v1 import billing_pb2 as pb
from services.billing.adapters.credits import Credits
from services.billing.adapters.pool import Pool
from services.billing.api import convert
from services.billing.domain import errors
from services.billing.domain.model import Invoice, Plan, Quote
from services.billing.unit_of_work import BillingUnitOfWork, Tx
from services.billing.use_cases import invoices, plans, purchases, quotes, removals
from services.billing.use_cases.purchases import PurchaseSaga

Context: TypeAlias = grpc.aio.ServicerContext
T = TypeVar("T")


async def _unchanged(result: T, tx: Tx) -> T:
    """Nothing to record besides the response (the effect was the pool's)."""
    return result


async def _pricing_details(call: Awaitable[T]) -> T:
    try:
        return await call
    except errors.PricingMismatch as error:
        raise convert.with_pricing_details(error) from None


class BillingServicer:
    def __init__(
        self,
        uow: BillingUnitOfWork,
        pool: Pool,
        saga: PurchaseSaga,
        quote_hold_seconds: int,
        events: EventStream,
        credits: Credits | None = None,
    ) -> None:
        self._uow = uow
        self._events = events
        self._pool = pool
        self._saga = saga
        self._quote_hold_seconds = quote_hold_seconds
        self._credits = credits  # None: billing runs without the credits service

    # --- plans ----------------------------------------------------------------------------

    async def CreatePlan(self, request: pb.CreatePlanRequest, context: Context) -> bytes:
        command = convert.new_plan(request)
        return await once_after(
            self._uow,
            request,
            command.company_id,
            lambda: plans.new_plan(command, self._uow, self._pool, self._credits),
            plans.add_plan,
            lambda plan: pb.CreatePlanResponse(plan=convert.plan_pb(plan)),
        )

    async def UpdatePlan(self, request: pb.UpdatePlanRequest, context: Context) -> bytes:
        company_id, plan_id, paths = convert.plan_ref(request)
        current = (
            await plans.get_plan(company_id, plan_id, self._uow) if "prices" in paths else None
        )
        command = convert.plan_changes(request, paths, current)
        return await once_after(
            self._uow,
            request,
            company_id,
            lambda: plans.changed_plan(command, self._uow, self._pool, self._credits),
            plans.save_plan,
            lambda plan: pb.UpdatePlanResponse(plan=convert.plan_pb(plan)),
        )

    async def GetPlan(self, request: pb.GetPlanRequest, context: Context) -> pb.GetPlanResponse:
        company_id = uuid_field("company_id", request.company_id)
        plan_id = uuid_field("plan_id", request.plan_id)
        found: Plan = await plans.get_plan(company_id, plan_id, self._uow)
        return pb.GetPlanResponse(plan=convert.plan_pb(found))

    async def ListPlans(
        self, request: pb.ListPlansRequest, context: Context
    ) -> pb.ListPlansResponse:
        page = convert.plans_page(request)
        found = await plans.list_plans(page, self._uow)
        return convert.plans_response(found, page.limit - 1)

    async def CheckPricingParity(
        self, request: pb.CheckPricingParityRequest, context: Context
    ) -> pb.CheckPricingParityResponse:
        currency = currency_field("currency", request.currency)
        company_id = uuid_field("company_id", request.company_id)
        found, enabled = await plans.pricing_parity(company_id, currency, self._uow, self._pool)
        return convert.parity_response(found, enabled, currency)

    async def PreviewEnablePool(
        self, request: pb.PreviewEnablePoolRequest, context: Context
    ) -> pb.PreviewEnablePoolResponse:
        company_id = uuid_field("company_id", request.company_id)
        currency = currency_field("currency", request.currency)
        found = await plans.preview_enable_pool(company_id, currency, self._uow, self._pool)
        return convert.preview_response(company_id, currency, found)

    # --- quotes and purchases -------------------------------------------------------------

    async def QuoteLicensePurchase(
        self, request: pb.QuoteLicensePurchaseRequest, context: Context
    ) -> pb.QuoteLicensePurchaseResponse | bytes:
        command = convert.quote_command(request)

        def run() -> Awaitable[Quote]:
            return quotes.quote(command, self._uow, self._pool, self._quote_hold_seconds)

        if command.hold_request_id is None:
            return convert.quote_response(await _pricing_details(run()))
        return await _pricing_details(
            once_after(
                self._uow,
                request,
                command.company_id,
                run,
                quotes.save_quote,
                convert.quote_response,
            )
        )

    async def PurchaseLicenses(
        self, request: pb.PurchaseLicensesRequest, context: Context
    ) -> pb.PurchaseLicensesResponse:
        company_id = uuid_field("company_id", request.company_id)
        key = key_for(method_name(), company_id, request)
        command = convert.purchase_command(request, company_id, key.fingerprint)
        done = await _pricing_details(self._saga.purchase(command, call_context.time_remaining()))
        return pb.PurchaseLicensesResponse(purchase=convert.purchase_pb(done))

    async def GetPurchase(
        self, request: pb.GetPurchaseRequest, context: Context
    ) -> pb.GetPurchaseResponse:
        company_id = uuid_field("company_id", request.company_id)
        purchase_id = uuid_field("purchase_id", request.purchase_id)
        found = await purchases.get_purchase(company_id, purchase_id, self._uow)
        return pb.GetPurchaseResponse(purchase=convert.purchase_pb(found))

    async def ListPurchases(
        self, request: pb.ListPurchasesRequest, context: Context
    ) -> pb.ListPurchasesResponse:
        page = convert.purchases_page(request)
        found = await purchases.list_purchases(page, self._uow)
        return convert.purchases_response(found, page.limit - 1)

    # --- removals and invoices ------------------------------------------------------------

    async def ScheduleRemoval(self, request: pb.ScheduleRemovalRequest, context: Context) -> bytes:
        command = convert.removal_command(request)
        return await once_after(
            self._uow,
            request,
            command.company_id,
            lambda: removals.schedule_removal(command, self._uow, self._pool),
            _unchanged,
            convert.removal_response,
        )

    async def CloseCycle(self, request: pb.CloseCycleRequest, context: Context) -> bytes:
        company_id = uuid_field("company_id", request.company_id)
        period = convert.period_field(request.period)
        return await once_after(
            self._uow,
            request,
            company_id,
            lambda: invoices.close_cycle(company_id, period, self._uow, self._pool, self._credits),
            _unchanged,
            lambda invoice: pb.CloseCycleResponse(invoice=convert.invoice_pb(invoice)),
        )

    async def GetInvoice(
        self, request: pb.GetInvoiceRequest, context: Context
    ) -> pb.GetInvoiceResponse:
        company_id = uuid_field("company_id", request.company_id)
        invoice_id = uuid_field("invoice_id", request.invoice_id)
        found: Invoice = await invoices.get_invoice(company_id, invoice_id, self._uow)
        return pb.GetInvoiceResponse(invoice=convert.invoice_pb(found))

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: Context
    ) -> pb.ListInvoicesResponse:
        company_id = uuid_field("company_id", request.company_id)
        size = paging.page_size(request.page_size)
        before = convert.invoices_before(request)
        found = await invoices.list_invoices(company_id, before, size + 1, self._uow)
        return convert.invoices_response(found, size)

    # --- events ---------------------------------------------------------------------------

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Context
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        async for message in self._events.watch(request):
            yield message
