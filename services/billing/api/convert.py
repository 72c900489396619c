"""Billing's protobuf <-> domain: requests checked field by field and turned into the
use cases' commands; domain results turned into responses."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC

from libs.common import paging
from libs.common.errors import InvalidArgument, invalid
from libs.common.handlers import next_page_token
from libs.common.timestamps import timestamp
from libs.common.validation import (
    currency_field,
    license_type_field,
    optional_currency_field,
    optional_uuid_field,
    quantity_field,
    text_field,
    uuid_field,
)
from licensing.billing.v1 import billing_pb2 as pb
from services.billing.domain import checkout, cycles, errors, parity
from services.billing.domain.model import (
    CreditOverage,
    Invoice,
    InvoiceLine,
    Plan,
    PlanKind,
    Purchase,
    PurchaseCharge,
    PurchaseState,
    Quote,
)
from services.billing.use_cases.plans import EnablePreview, NewPlan, PlanChanges, PlanPage
from services.billing.use_cases.purchases import PurchaseCommand, PurchasePage
from services.billing.use_cases.quotes import QuoteCommand
from services.billing.use_cases.removals import Removal, ScheduleRemoval

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BillingService"].full_name
MAX_PRICE_MINOR = 10**12

_PLAN_KINDS: dict[int, PlanKind] = {
    pb.PLAN_KIND_BUNDLE: PlanKind.BUNDLE,
    pb.PLAN_KIND_LEGACY: PlanKind.LEGACY,
}
_PLAN_KIND_PB = {v: k for k, v in _PLAN_KINDS.items()}
_PURCHASE_STATE_PB = {
    PurchaseState.PENDING: pb.PURCHASE_STATE_PENDING,
    PurchaseState.COMPLETED: pb.PURCHASE_STATE_COMPLETED,
    PurchaseState.FAILED: pb.PURCHASE_STATE_FAILED,
}
_UPDATABLE = frozenset(
    {"kind", "prices", "contracted", "active", "primary", "display_name", "credit_allowance_minor"}
)
MAX_ALLOWANCE_MINOR = 10**12


# --- domain -> proto ----------------------------------------------------------------------


def money(amount: int, currency: str) -> pb.Money:
    return pb.Money(currency_code=currency, amount_minor=amount)


def plan_pb(plan: Plan) -> pb.Plan:
    return pb.Plan(
        plan_id=str(plan.plan_id),
        company_id=str(plan.company_id),
        office_id=str(plan.office_id),
        kind=_PLAN_KIND_PB[plan.kind],  # type: ignore[arg-type]
        currency=plan.currency,
        prices=[
            pb.Price(license_type=t, unit_price=money(p, plan.currency))
            for t, p in sorted(plan.prices.items())
        ],
        contracted=plan.contracted,
        start_time=timestamp(plan.start_at),
        active=plan.active,
        primary=plan.primary,
        create_time=timestamp(plan.created_at),
        update_time=timestamp(plan.updated_at),
        display_name=plan.display_name,
        credit_allowance_minor=plan.credit_allowance,
    )


def mismatch_pb(found: parity.Mismatch, currency: str) -> pb.PriceMismatch:
    return pb.PriceMismatch(
        license_type=found.license_type,
        plan_prices=[
            pb.PlanPrice(
                plan_id=str(plan_id),
                office_id=str(office_id),
                unit_price=money(price, currency) if price is not None else None,
            )
            for plan_id, office_id, price in found.prices
        ],
    )


def quote_pb(quote: Quote) -> pb.Quote:
    return pb.Quote(
        quote_id=str(quote.quote_id) if quote.quote_id else "",
        company_id=str(quote.company_id),
        office_id=str(quote.office_id),
        license_type=quote.license_type,
        quantity=quote.quantity,
        restored=quote.split.restored,
        from_pool=quote.split.from_pool,
        new_units=quote.split.new,
        unit_price=money(quote.unit_price, quote.currency),
        amount=money(quote.amount, quote.currency),
        message=checkout.message(quote.split),
        cycle_start_time=timestamp(quote.cycle.start),
        cycle_end_time=timestamp(quote.cycle.end),
        quote_time=timestamp(quote.quoted_at),
        expire_time=timestamp(quote.expires_at) if quote.quote_id else None,
        plan_id=str(quote.plan_id),
        own_returns=quote.own_returns,
    )


def purchase_pb(purchase: Purchase) -> pb.Purchase:
    split = purchase.split
    return pb.Purchase(
        purchase_id=str(purchase.purchase_id),
        company_id=str(purchase.company_id),
        office_id=str(purchase.office_id),
        license_type=purchase.license_type,
        quantity=purchase.quantity,
        state=_PURCHASE_STATE_PB[purchase.state],
        restored=split.restored if split else 0,
        from_pool=split.from_pool if split else 0,
        new_units=split.new if split else 0,
        unit_price=money(purchase.unit_price, purchase.currency),
        amount=money(purchase.amount, purchase.currency),
        message=checkout.message(split) if split else "",
        quote_id=str(purchase.quote_id) if purchase.quote_id else "",
        plan_id=str(purchase.plan_id),
        period=cycles.period_of(purchase.cycle.start),
        cycle_start_time=timestamp(purchase.cycle.start),
        cycle_end_time=timestamp(purchase.cycle.end),
        purchase_time=timestamp(purchase.purchased_at),
        resolve_time=timestamp(purchase.resolved_at),
        failure_reason=purchase.failure_reason or ""
        if purchase.state is PurchaseState.FAILED
        else "",
        # The units are the purchase's once it is COMPLETED (a pending one is still
        # gathering them).
        unit_ids=[str(u) for u in purchase.unit_ids]
        if purchase.state is PurchaseState.COMPLETED
        else [],
    )


def _line_pb(line: InvoiceLine) -> pb.InvoiceLine:
    return pb.InvoiceLine(
        kind=pb.LineKind.Value(f"LINE_KIND_{line.kind.value}"),
        office_id=str(line.office_id) if line.office_id else "",
        plan_id=str(line.plan_id) if line.plan_id else "",
        currency=line.currency,
        license_type=line.license_type,
        assigned=line.assigned,
        spare=line.spare,
        removal_scheduled=line.removal_scheduled,
        held=line.held,
        pooled=line.pooled,
        units=line.units,
        unit_price=money(line.unit_price, line.currency),
        amount=money(line.amount, line.currency),
        unpriced=line.unpriced,
    )


def _charge_pb(charge: PurchaseCharge) -> pb.PurchaseCharge:
    return pb.PurchaseCharge(
        purchase_id=str(charge.purchase_id),
        office_id=str(charge.office_id),
        plan_id=str(charge.plan_id),
        license_type=charge.license_type,
        new_units=charge.new_units,
        amount=money(charge.amount, charge.currency),
        purchase_time=timestamp(charge.purchased_at),
        period=charge.period,
        billed_in_advance=charge.billed_in_advance,
        adjustment=money(charge.adjustment, charge.currency) if charge.billed_in_advance else None,
    )


def _overage_pb(owed: CreditOverage) -> pb.CreditOverage:
    return pb.CreditOverage(
        office_id=str(owed.office_id),
        plan_id=str(owed.plan_id) if owed.plan_id else "",
        period_start_time=timestamp(owed.period_start),
        period_end_time=timestamp(owed.period_end),
        amount=money(owed.amount, owed.currency),
    )


def invoice_pb(invoice: Invoice) -> pb.Invoice:
    return pb.Invoice(
        invoice_id=str(invoice.invoice_id),
        company_id=str(invoice.company_id),
        period=invoice.period,
        snapshot_time=timestamp(invoice.snapshot_at),
        lines=[_line_pb(line) for line in invoice.lines],
        purchase_charges=[_charge_pb(c) for c in invoice.charges],
        totals=[money(amount, currency) for currency, amount in sorted(invoice.totals.items())],
        reconciliation=pb.Reconciliation(
            live_units=invoice.reconciliation.live_units,
            billed_units=invoice.reconciliation.billed_units,
            balanced=invoice.reconciliation.balanced,
            unpriced_units=invoice.unpriced_units,
        ),
        terminated_units=invoice.terminated_units,
        create_time=timestamp(invoice.created_at),
        unpriced_units=invoice.unpriced_units,
        credit_overages=[_overage_pb(o) for o in invoice.overages],
        credit_overage_included=invoice.overage_included,
    )


# --- proto -> domain ----------------------------------------------------------------------


def _plan_kind(value: int) -> PlanKind:
    kind = _PLAN_KINDS.get(value)
    if kind is None:
        raise invalid("plan.kind", "must be PLAN_KIND_BUNDLE or PLAN_KIND_LEGACY")
    return kind


def _prices(items: Iterable[pb.Price], currency: str) -> dict[str, int]:
    prices: dict[str, int] = {}
    for index, item in enumerate(items):
        field = f"plan.prices[{index}]"
        code = license_type_field(f"{field}.license_type", item.license_type).code
        if code in prices:
            raise invalid(f"{field}.license_type", f"{code} is priced twice")
        if item.unit_price.currency_code != currency:
            raise InvalidArgument(
                "CURRENCY_MISMATCH",
                f"{field}.unit_price.currency_code: must be the plan's currency {currency}",
                {"field": f"{field}.unit_price.currency_code"},
            )
        amount = item.unit_price.amount_minor
        if amount < 0 or amount > MAX_PRICE_MINOR:
            raise invalid(f"{field}.unit_price.amount_minor", "must be 0 or more", "INVALID_PRICE")
        prices[code] = amount
    return prices


def _allowance(value: int, field: str) -> int:
    if value < 0 or value > MAX_ALLOWANCE_MINOR:
        raise invalid(field, f"must be 0 to {MAX_ALLOWANCE_MINOR}")
    return value


def period_field(value: str, field: str = "period") -> str:
    if not value:
        raise invalid(field, "is required", "MISSING_FIELD")
    cycles.parse_period(value)
    return value


# --- requests -> commands -----------------------------------------------------------------


def new_plan(request: pb.CreatePlanRequest) -> NewPlan:
    p = request.plan
    company_id = uuid_field("plan.company_id", p.company_id)
    currency = currency_field("plan.currency", p.currency)
    return NewPlan(
        company_id=company_id,
        request_id=request.request_id,
        office_id=uuid_field("plan.office_id", p.office_id),
        kind=_plan_kind(p.kind),
        currency=currency,
        prices=_prices(p.prices, currency),
        contracted=p.contracted,
        start_at=p.start_time.ToDatetime(tzinfo=UTC) if p.HasField("start_time") else None,
        primary=p.primary,
        display_name=_plan_name(p.display_name),
        credit_allowance=_allowance(p.credit_allowance_minor, "plan.credit_allowance_minor"),
    )


def plan_ref(request: pb.UpdatePlanRequest) -> tuple[uuid.UUID, uuid.UUID, set[str]]:
    """(company, plan, paths) of a plan update; the mask must name what may change."""
    company_id = uuid_field("plan.company_id", request.plan.company_id)
    plan_id = uuid_field("plan.plan_id", request.plan.plan_id)
    paths = set(request.update_mask.paths)
    if not paths:
        raise invalid("update_mask", "is required", "MISSING_FIELD")
    unknown = paths - _UPDATABLE
    if unknown:
        raise invalid("update_mask", f"cannot update {', '.join(sorted(unknown))}")
    return company_id, plan_id, paths


def plan_changes(
    request: pb.UpdatePlanRequest, paths: set[str], current: Plan | None
) -> PlanChanges:
    """The changes of a plan update (`current`: the plan, needed when prices change)."""
    p = request.plan
    prices = None
    if "prices" in paths:
        assert current is not None
        prices = _prices(p.prices, current.currency)
    return PlanChanges(
        company_id=uuid_field("plan.company_id", p.company_id),
        request_id=request.request_id,
        plan_id=uuid_field("plan.plan_id", p.plan_id),
        kind=_plan_kind(p.kind) if "kind" in paths else None,
        prices=prices,
        contracted=p.contracted if "contracted" in paths else None,
        active=p.active if "active" in paths else None,
        primary=p.primary if "primary" in paths else None,
        display_name=_plan_name(p.display_name) if "display_name" in paths else None,
        credit_allowance=_allowance(p.credit_allowance_minor, "plan.credit_allowance_minor")
        if "credit_allowance_minor" in paths
        else None,
    )


def _plan_name(value: str) -> str:
    return text_field("plan.display_name", value, 200, required=False)


def plans_page(request: pb.ListPlansRequest) -> PlanPage:
    company_id = uuid_field("company_id", request.company_id)
    size = paging.page_size(request.page_size)
    key = paging.time_key(request.page_token)
    return PlanPage(
        company_id=company_id,
        office_id=optional_uuid_field("office_id", request.office_id),
        currency=optional_currency_field("currency", request.currency),
        active_only=request.active_only,
        after=(key[0], str(key[1])) if key else None,
        limit=size + 1,
    )


def plans_response(plans: Sequence[Plan], size: int) -> pb.ListPlansResponse:
    page, token = next_page_token(
        plans, size, lambda last: paging.time_key_token(last.start_at, last.plan_id)
    )
    return pb.ListPlansResponse(plans=[plan_pb(p) for p in page], next_page_token=token)


def parity_response(
    found: Sequence[parity.Mismatch], enabled: bool, currency: str
) -> pb.CheckPricingParityResponse:
    return pb.CheckPricingParityResponse(
        in_parity=not found,
        mismatches=[mismatch_pb(m, currency) for m in found],
        pool_enabled=enabled,
    )


def preview_response(
    company_id: uuid.UUID, currency: str, found: EnablePreview
) -> pb.PreviewEnablePoolResponse:
    pool = found.pool
    return pb.PreviewEnablePoolResponse(
        company_id=str(company_id),
        currency=currency,
        can_enable=not pool.refusal_reason,
        refusal_reason=pool.refusal_reason,
        refusal_message=pool.refusal_message,
        entries=[
            pb.PoolEntry(
                office_id=str(e.office_id), license_type=e.license_type, quantity=e.quantity
            )
            for e in pool.entries
        ],
        entering_units=sum(e.quantity for e in pool.entries),
        office_ids=[str(o) for o in pool.office_ids],
        in_parity=not found.mismatches,
        mismatches=[mismatch_pb(m, currency) for m in found.mismatches],
    )


def quote_command(request: pb.QuoteLicensePurchaseRequest) -> QuoteCommand:
    return QuoteCommand(
        company_id=uuid_field("company_id", request.company_id),
        office_id=uuid_field("office_id", request.office_id),
        license_type=license_type_field("license_type", request.license_type).code,
        quantity=quantity_field("quantity", request.quantity),
        hold_request_id=request.request_id if request.hold else None,
    )


def quote_response(quote: Quote) -> pb.QuoteLicensePurchaseResponse:
    return pb.QuoteLicensePurchaseResponse(quote=quote_pb(quote))


def purchase_command(
    request: pb.PurchaseLicensesRequest, company_id: uuid.UUID, fingerprint: bytes
) -> PurchaseCommand:
    quote_id = optional_uuid_field("quote_id", request.quote_id)
    if quote_id is None:
        office_id: uuid.UUID | None = uuid_field("office_id", request.office_id)
        code: str | None = license_type_field("license_type", request.license_type).code
        quantity: int | None = quantity_field("quantity", request.quantity)
    else:
        office_id = optional_uuid_field("office_id", request.office_id)
        code = (
            license_type_field("license_type", request.license_type).code
            if request.license_type
            else None
        )
        quantity = quantity_field("quantity", request.quantity) if request.quantity else None
    return PurchaseCommand(
        company_id=company_id,
        request_id=request.request_id,
        fingerprint=fingerprint,
        office_id=office_id,
        license_type=code,
        quantity=quantity,
        quote_id=quote_id,
    )


def purchases_page(request: pb.ListPurchasesRequest) -> PurchasePage:
    company_id = uuid_field("company_id", request.company_id)
    size = paging.page_size(request.page_size)
    before = paging.time_key(request.page_token)
    return PurchasePage(
        company_id=company_id,
        office_id=optional_uuid_field("office_id", request.office_id),
        period=period_field(request.period) if request.period else None,
        before=before,
        limit=size + 1,
    )


def purchases_response(purchases: Sequence[Purchase], size: int) -> pb.ListPurchasesResponse:
    page, token = next_page_token(
        purchases, size, lambda last: paging.time_key_token(last.purchased_at, last.purchase_id)
    )
    return pb.ListPurchasesResponse(purchases=[purchase_pb(p) for p in page], next_page_token=token)


def removal_command(request: pb.ScheduleRemovalRequest) -> ScheduleRemoval:
    return ScheduleRemoval(
        company_id=uuid_field("company_id", request.company_id),
        request_id=request.request_id,
        office_id=uuid_field("office_id", request.office_id),
        license_type=license_type_field("license_type", request.license_type).code,
        quantity=quantity_field("quantity", request.quantity),
    )


def removal_response(removal: Removal) -> pb.ScheduleRemovalResponse:
    return pb.ScheduleRemovalResponse(
        unit_ids=list(removal.unit_ids), removal_time=timestamp(removal.removal_at)
    )


def invoices_before(request: pb.ListInvoicesRequest) -> str | None:
    return paging.single_key(request.page_token, lambda key: period_field(str(key), "page_token"))


def invoices_response(invoices: Sequence[Invoice], size: int) -> pb.ListInvoicesResponse:
    page, token = next_page_token(invoices, size, lambda last: paging.encode_token([last.period]))
    return pb.ListInvoicesResponse(invoices=[invoice_pb(i) for i in page], next_page_token=token)


def with_pricing_details(error: errors.PricingMismatch) -> errors.PricingMismatch:
    """A PRICING_MISMATCH carries the mismatches in its status details."""
    error.details = (
        pb.PricingMismatchDetail(
            company_id=str(error.company_id),
            currency=error.currency,
            mismatches=[
                mismatch_pb(m, error.currency)
                for m in error.mismatches
                if isinstance(m, parity.Mismatch)
            ],
        ),
    )
    return error
