"""Billing's event stream (WatchEvents): purchases settled and invoices issued, each
once, in commit order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import pytest

from libs.common.clock import FakeClock
from licensing.billing.v1 import billing_pb2 as bpb
from tests.support.billing import Shop
from tests.support.events import refused, watch
from tests.support.pool import reason_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_completed_purchase_and_an_issued_invoice_are_published_once(
    shop: Shop, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 1, 10, tzinfo=UTC))
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1)
    purchase = await shop.buy("a", "connect", 2)
    clock.set(datetime(2026, 2, 2, tzinfo=UTC))
    invoice = await shop.close("2026-01")
    await shop.close("2026-01")  # answered as it is: no second invoice, no second event

    events, cursor = await watch(shop.billing, bpb.WatchEventsRequest, shop.company_id, until=2)

    assert [e.type for e in events] == ["billing.purchase.completed", "billing.invoice.issued"]
    assert events[0].data["purchase_id"] == purchase.purchase_id
    assert list(events[0].data["unit_ids"]) == list(purchase.unit_ids)
    assert events[1].data["invoice_id"] == invoice.invoice_id
    assert events[1].data["period"] == "2026-01"
    quiet, _ = await watch(shop.billing, bpb.WatchEventsRequest, shop.company_id, cursor=cursor)
    assert quiet == []


async def test_a_cursor_of_another_company_is_refused(shop: Shop) -> None:
    await shop.plan("a", "USD", {"connect": 1000}, JAN_1)
    await shop.buy("a", "connect", 1)
    _, cursor = await watch(shop.billing, bpb.WatchEventsRequest, shop.company_id, until=1)
    error = await refused(
        shop.billing, bpb.WatchEventsRequest(company_id=str(uuid.uuid4()), cursor=cursor)
    )
    assert (error.code(), reason_of(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CURSOR")
